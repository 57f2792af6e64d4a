#!/usr/bin/perl
# Browser logins held at the callback, for the non-blocking proof of bench/run.sh.
#   logins.pl prepare OP_URL BASE N   log in N browsers at the provider up to the
#                                     redirect back to BASE's callback; prints
#                                     one "PATH<TAB>COOKIE" per login
#   logins.pl fire PORT FILE          sends all those callbacks at once on their
#                                     own connections, prints "sent EPOCH", then
#                                     waits for every answer and prints
#                                     "done OK_COUNT TOTAL FIRST_EPOCH LAST_EPOCH"
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../t/lib";
use IO::Socket::INET;
use IO::Select;
use Time::HiRes qw(time);

$| = 1;
my $cmd = shift // '';
if ($cmd eq 'prepare') {
    require OAuth2Browser;
    my ($op, $base, $n) = @ARGV;
    for my $i (1 .. $n) {
        my $b = OAuth2Browser->new(op => $op);
        my $r = $b->get("$base/app/", { accept => 'text/html' });
        die "expected a redirect to the provider, got $r->{status}\n" unless $r->{status} == 302;
        my $back = $b->login_at_provider($r->{headers}{location}, "slow-$i");
        my ($path) = $back->{headers}{location} =~ m{^(?:https?://[^/]+)?(/.*)$};
        print "$path\t", $b->cookie_header('/oauth2/callback'), "\n";
    }
} elsif ($cmd eq 'fire') {
    my ($port, $file) = @ARGV;
    open my $fh, '<', $file or die "$file: $!\n";
    my @socks;
    for my $line (<$fh>) {
        chomp $line;
        my ($path, $cookie) = split /\t/, $line, 2;
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Proto => 'tcp')
            or die "connect: $!\n";
        print $s "GET $path HTTP/1.1\r\nHost: 127.0.0.1:$port\r\nAccept: text/html\r\n"
            . "Cookie: $cookie\r\nConnection: close\r\n\r\n";
        push @socks, $s;
    }
    print "sent ", time, "\n";
    # read whichever answers first, so each answer's time is when it came
    my $sel = IO::Select->new(@socks);
    my (%buf, $first);
    my ($ok, $last) = (0, 0);
    # at most 60 s in all: a login that never answers counts as failed
    my $deadline = time + 60;
    while ($sel->count && time < $deadline) {
        for my $s ($sel->can_read($deadline - time)) {
            my $n = sysread($s, my $chunk, 65536);
            if ($n) { $buf{$s} .= $chunk; next }
            my $t = time;
            $first = $t if !defined $first;
            $last = $t;
            my $resp = delete $buf{$s} // '';
            $ok++ if $resp =~ m{^HTTP/1\.1 302 } && $resp =~ /^Set-Cookie: oauth2_session/mi;
            $sel->remove($s);
            close $s;
        }
    }
    printf "done %d %d %.3f %.3f\n", $ok, scalar @socks, $first // 0, $last;
} else {
    die "usage: logins.pl prepare OP_URL BASE N | fire PORT FILE\n";
}
