# Session refresh: the provider issues access tokens for 6 s; the module
# refreshes them with the refresh token, once for concurrent requests.
use strict;
use warnings;
use lib 't/lib';
use OAuth2Test;
use IO::Socket::INET;

my $port = fixed_port();
op_start(redirect_uri => ["http://127.0.0.1:$port/oauth2/callback"], access_ttl => 6);
write_cookie_keys('cookie.keys', 'r');
our %saved;
run_tests();

# send N requests at once on N connections, return their status lines and Set-Cookie counts
sub concurrent {
    my ($n, $path, $cookie) = @_;
    my @s = map {
        IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => nginx_port(), Proto => 'tcp') or die $!
    } 1 .. $n;
    print $_ "GET $path HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: $cookie\r\nConnection: close\r\n\r\n" for @s;
    my @out;
    for my $s (@s) {
        local $/;
        my $resp = <$s>;
        my ($status) = $resp =~ m{^HTTP/1\.1 (\d+)};
        push @out, { status => $status, set_cookie => scalar(() = $resp =~ /^Set-Cookie: oauth2_session=/mg), resp => $resp };
    }
    return @out;
}

__DATA__

=== TEST 1: an expired access token is refreshed once for concurrent requests
--- http_config
oauth2_issuer $TEST_OP;
oauth2_client_id nginx;
oauth2_client_secret nginx-secret;
oauth2_cookie_secret_file $TEST_ROOT/cookie.keys;
oauth2_cookie_secure off;
--- config
location / {
    oauth2_auth on;
    add_header X-Sub $oauth2_sub always;
    add_header X-Token $oauth2_access_token always;
    empty_gif;
}
location = /oauth2/callback { oauth2_callback; }
--- test
my $base = "http://127.0.0.1:" . nginx_port();
my $b = browser();
is($b->login("$base/")->{status}, 302, 'logged in');
my $r = $b->get("$base/x");
is($r->{status}, 200, 'session works');
my $token1 = $r->{headers}{'x-token'};
my $cookie = "oauth2_session=" . $b->cookie('oauth2_session');
$main::saved{cookie} = $cookie;
sleep 6.5;   # the access token expires
my $before = op_stat('/token');
my @res = main::concurrent(6, '/x', $cookie);
is(scalar(grep { $_->{status} == 200 } @res), 6, 'all concurrent requests pass')
    or diag(join "\n---\n", map { $_->{resp} } @res);
is(op_stat('/token') - $before, 1, 'exactly one refresh at the token endpoint');
is(scalar(grep { $_->{set_cookie} } @res), 6, 'each response re-issues the session cookie');
my ($new) = $res[0]{resp} =~ /^Set-Cookie: (oauth2_session=[^;]+)/m;
my ($token2) = $res[0]{resp} =~ /^X-Token: (\S+)/m;
isnt($token2, $token1, 'a new access token');
is(op_stat('/token') - $before, 1, 'still one refresh');
my ($again) = main::concurrent(1, '/x', $new);
is($again->{status}, 200, 'the new cookie works');
is($again->{set_cookie}, 0, 'and needs no refresh');
--- error_log
oauth2: login completed

=== TEST 2: a refresh the provider refuses ends the session cleanly
--- http_config
oauth2_issuer $TEST_OP;
oauth2_client_id nginx;
oauth2_client_secret wrong-secret;
oauth2_cookie_secret_file $TEST_ROOT/cookie.keys;
oauth2_cookie_secure off;
--- config
location / { oauth2_auth on; oauth2_on_failure 401; empty_gif; }
--- test
sleep 1;
my ($r) = main::concurrent(1, '/x', $main::saved{cookie});
is($r->{status}, 401, 'refused refresh: 401');
like($r->{resp}, qr/^Set-Cookie: oauth2_session=; Path=\/; Max-Age=0/m, 'the session cookie is cleared');
--- error_log
oauth2: session refresh failed
the session ends

=== TEST 3: with oauth2_refresh off an expired session simply ends
--- http_config
oauth2_issuer $TEST_OP;
oauth2_client_id nginx;
oauth2_client_secret nginx-secret;
oauth2_cookie_secret_file $TEST_ROOT/cookie.keys;
oauth2_cookie_secure off;
oauth2_refresh off;
--- config
location / { oauth2_auth on; oauth2_on_failure 401; empty_gif; }
location = /oauth2/callback { oauth2_callback; }
--- test
my $base = "http://127.0.0.1:" . nginx_port();
my $before = op_stat('/token');
my ($r) = main::concurrent(1, '/x', $main::saved{cookie});
is($r->{status}, 401, 'expired, no refresh: 401');
is(op_stat('/token') - $before, 0, 'no refresh attempted');
