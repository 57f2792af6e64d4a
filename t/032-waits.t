# Parked requests always finish: every wait has a deadline (derived from
# oauth2_provider_timeout), the fetcher answers every job (even one whose
# task panics), a refresh whose waiters went away still serves the next
# request, a gracefully exiting worker answers the requests it holds, and a
# flood of garbage opaque tokens reaches the provider at a bounded rate.
# The fetcher's own failures are provoked with the test-only request header
# X-Oauth2-Test-Fetcher (builds with the test-hooks feature).
use strict;
use warnings;
use lib 't/lib';
use OAuth2Test;
use IO::Socket::INET;
use IO::Select;
use POSIX ();
use Time::HiRes qw(time sleep);

my $port = fixed_port();
op_start(redirect_uri => ["http://127.0.0.1:$port/oauth2/callback"], access_ttl => 6);
write_cookie_keys('cookie.keys', 'w');
run_tests();

sub timed_get {
    my ($path, $h) = @_;
    my $t0 = time;
    my $r = http_get($path, $h);
    return ($r, time - $t0);
}

# send a raw request; returns the connected socket
sub send_raw {
    my ($path, @headers) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => nginx_port(), Proto => 'tcp')
        or die "connect: $!";
    print $s "GET $path HTTP/1.1\r\nHost: 127.0.0.1\r\n", map({ "$_\r\n" } @headers), "Connection: close\r\n\r\n";
    return $s;
}

# read a whole response within $timeout seconds: (status or 0, text)
sub read_raw {
    my ($s, $timeout) = @_;
    my $sel = IO::Select->new($s);
    my ($resp, $end) = ('', time + $timeout);
    while ((my $left = $end - time) > 0) {
        last unless $sel->can_read($left);
        my $n = sysread($s, my $buf, 65536);
        last unless $n;
        $resp .= $buf;
    }
    close $s;
    my ($status) = $resp =~ m{^HTTP/1\.1 (\d+)};
    return ($status // 0, $resp);
}

sub master_pid {
    open my $f, '<', servroot() . '/logs/nginx.pid' or die "no pid file: $!";
    my $p = <$f>;
    chomp $p;
    return $p;
}

__DATA__

=== TEST 1: an introspection that never ends: 503 + Retry-After at the deadline, its slot freed
--- http_config
oauth2_issuer $TEST_OP;
oauth2_client_id nginx;
oauth2_client_secret nginx-secret;
oauth2_audience urn:test:opaque;
oauth2_on_failure 401;
oauth2_provider_timeout 500ms;
--- config
location / {
    oauth2_auth on;
    oauth2_token_validation introspection;
    add_header X-Error $oauth2_error always;
    empty_gif;
}
location /open { empty_gif; }
--- test
my $t = token(resource => 'urn:test:opaque');
is(http_get('/', { Authorization => "Bearer $t" })->{status}, 200, 'introspection works');
my ($r, $took) = main::timed_get('/', { Authorization => 'Bearer stuck-token', 'X-Oauth2-Test-Fetcher' => 'stall' });
is($r->{status}, 503, 'a job that never ends: 503');
like($r->{headers}{'retry-after'} // '', qr/^\d+$/, 'with Retry-After');
is($r->{headers}{'x-error'}, 'provider_unavailable', '$oauth2_error says why');
cmp_ok($took, '>=', 1.2, 'answered at its deadline (500ms timeout + 1 s)');
cmp_ok($took, '<', $ENV{TEST_NGINX_VALGRIND} ? 30 : 5, 'not later');
($r, $took) = main::timed_get('/', { Authorization => 'Bearer stuck-token' });
is($r->{status}, 401, 'the same token later is introspected anew (the stuck job was given up)');
cmp_ok($took, '<', 1.2, 'without waiting for the stuck job');
is(http_get('/open')->{status}, 200, 'the worker serves on');
--- error_log
waited too long for the provider
the identity provider did not answer in time

=== TEST 2: a fetcher task that panics answers its job at once (no wait for the deadline)
--- http_config
oauth2_issuer $TEST_OP;
oauth2_client_id nginx;
oauth2_client_secret nginx-secret;
oauth2_audience urn:test:opaque;
oauth2_on_failure 401;
oauth2_provider_timeout 5s;
--- config
location / { oauth2_auth on; oauth2_token_validation introspection; empty_gif; }
--- test
my $t = token(resource => 'urn:test:opaque');
is(http_get('/', { Authorization => "Bearer $t" })->{status}, 200, 'introspection works');
my ($r, $took) = main::timed_get('/', { Authorization => 'Bearer panic-token', 'X-Oauth2-Test-Fetcher' => 'panic' });
is($r->{status}, 503, 'the job failed: 503');
ok(defined $r->{headers}{'retry-after'}, 'with Retry-After');
cmp_ok($took, '<', $ENV{TEST_NGINX_VALGRIND} ? 5 : 2, 'answered long before the 6 s deadline');
is(http_get('/', { Authorization => "Bearer $t" })->{status}, 200, 'the fetcher goes on');
--- error_log
oauth2: introspection failed: the fetch task failed (panic)

=== TEST 3: a token request that never ends at the callback: 504, no session
--- http_config
oauth2_issuer $TEST_OP;
oauth2_client_id nginx;
oauth2_client_secret nginx-secret;
oauth2_cookie_secret_file $TEST_ROOT/cookie.keys;
oauth2_cookie_secure off;
oauth2_provider_timeout 500ms;
--- config
location / { oauth2_auth on; empty_gif; }
location = /oauth2/callback { oauth2_callback; }
--- test
my $base = "http://127.0.0.1:" . nginx_port();
my $b = browser();
my $r = $b->get("$base/app", { accept => 'text/html' });
is($r->{status}, 302, 'login starts');
my $back = $b->login_at_provider($r->{headers}{location}, 'alice');
my $t0 = time;
my $cb = $b->get(OAuth2Browser::absolute($base, $back->{headers}{location}), { 'X-Oauth2-Test-Fetcher' => 'stall' });
my $took = time - $t0;
is($cb->{status}, 504, 'the callback answers 504');
like($cb->{content}, qr/did not answer in time/, 'with a page that says so');
cmp_ok($took, '>=', 1.2, 'at the deadline');
cmp_ok($took, '<', $ENV{TEST_NGINX_VALGRIND} ? 30 : 5, 'not later');
ok(!defined $b->cookie('oauth2_session'), 'no session');
--- error_log
oauth2: callback: the identity provider did not answer in time

=== TEST 4: a refresh whose only waiter went away still serves the next request
--- http_config
oauth2_issuer $TEST_OP;
oauth2_client_id nginx;
oauth2_client_secret nginx-secret;
oauth2_cookie_secret_file $TEST_ROOT/cookie.keys;
oauth2_cookie_secure off;
oauth2_provider_timeout 5s;
--- config
location / {
    oauth2_auth on;
    add_header X-Token $oauth2_access_token always;
    empty_gif;
}
location = /oauth2/callback { oauth2_callback; }
--- test
my $base = "http://127.0.0.1:" . nginx_port();
my $b = browser();
is($b->login("$base/")->{status}, 302, 'logged in');
my $cookie = 'Cookie: oauth2_session=' . $b->cookie('oauth2_session');
sleep 6.5;   # the access token expires
my $before = op_stat('/token');
op_fault('{"tokenDelay":1500}');
# the first request starts the refresh, then its client goes away
my $s = main::send_raw('/a', $cookie);
sleep 0.4;
close $s;
sleep 2;     # the refresh ends with nobody waiting for it
op_fault('{"tokenDelay":0}');
my $t0 = time;
my ($status, $resp) = main::read_raw(main::send_raw('/b', $cookie), 10);
my $took = time - $t0;
is($status, 200, 'the next request with the old cookie is served');
cmp_ok($took, '<', 1, 'at once, with the refresh that ended');
like($resp, qr/^Set-Cookie: oauth2_session=[^;]+/m, 'with the refreshed session');
is(op_stat('/token') - $before, 1, 'one refresh at the token endpoint');
--- error_log
client prematurely closed connection
oauth2: session refreshed

=== TEST 5: a worker that exits gracefully answers the requests it holds
--- setup
op_ctl('/__test/delay', '{"jwks":1500}');
$main::tok = token();
--- http_config
oauth2_issuer $TEST_OP;
oauth2_audience urn:test:api;
oauth2_on_failure 401;
--- config
location / { oauth2_auth on; empty_gif; }
--- test
my $s = main::send_raw('/', "Authorization: Bearer $main::tok");
sleep 0.4;   # parked: the keys take 1.5 s
kill 'QUIT', main::master_pid();
my ($status, $resp) = main::read_raw($s, 15);
op_ctl('/__test/delay', '{"jwks":0}');
is($status, 200, 'the parked request got its answer during the shutdown');
--- error_log
gracefully shutting down
loaded 2 key(s)

=== TEST 6: a flood of distinct garbage opaque tokens reaches the provider at a bounded rate
--- http_config
oauth2_issuer $TEST_OP;
oauth2_client_id nginx;
oauth2_client_secret nginx-secret;
oauth2_audience urn:test:opaque;
oauth2_on_failure 401;
--- config
location / { oauth2_auth on; empty_gif; }
--- test
# the metadata first
is(http_get('/', { Authorization => 'Bearer warm-up-token' })->{status}, 401, 'a garbage token: 401');
# the same garbage token again and again: one call (refusals are remembered)
my $before = op_stat('/token/introspection');
is(http_get('/', { Authorization => 'Bearer same-garbage' })->{status}, 401, "garbage: 401") for 1 .. 5;
is(op_stat('/token/introspection') - $before, 1, 'one introspection call for 5 requests with one garbage token');

op_fault('{"introspectDelay":200}');
my ($clients, $each) = (80, 5);
my $dir = servroot() . '/flood';
mkdir $dir;
$before = op_stat('/token/introspection');
my $t0 = time;
my @kids;
for my $c (1 .. $clients) {
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        my $h = HTTP::Tiny->new(timeout => 20);
        open my $out, '>', "$dir/$c" or POSIX::_exit(1);
        for my $i (1 .. $each) {
            my $r = $h->get("http://127.0.0.1:" . nginx_port() . "/", { headers => { Authorization => "Bearer garbage-$c-$i-" . int(rand(1e9)) } });
            print $out "$r->{status} ", ($r->{headers}{'retry-after'} // '-'), "\n";
        }
        close $out;
        POSIX::_exit(0);
    }
    push @kids, $pid;
}
waitpid($_, 0) for @kids;
my $elapsed = time - $t0;
op_fault('{"introspectDelay":0}');
my $calls = op_stat('/token/introspection') - $before;
my %by;
for my $c (1 .. $clients) {
    open my $f, '<', "$dir/$c" or next;
    while (<$f>) { my ($st, $ra) = split; $by{$st}++; $by{"503-retry"}++ if $st == 503 && $ra ne '-' }
}
my $n = $clients * $each;
is(($by{401} // 0) + ($by{503} // 0), $n, "every one of $n requests got 401 or 503")
    or diag(join ', ', map { "$_: $by{$_}" } sort keys %by);
ok(($by{503} // 0) > 0, 'the excess got 503');
is($by{'503-retry'} // 0, $by{503} // 0, 'each 503 with Retry-After');
cmp_ok($calls, '<=', $by{401} // 0, 'no introspection call for a request refused with 503');
my $rate = $calls / $elapsed;
# at most 32 calls in flight per worker, each taking 200 ms at the provider
my $bound = 32 / 0.2;
diag(sprintf "flood: %d requests from %d clients in %.2f s, %d reached the provider: %.0f introspection calls/s (bound: 32 in flight / 0.2 s = %.0f/s); %d got 401, %d got 503",
    $n, $clients, $elapsed, $calls, $rate, $bound, $by{401} // 0, $by{503} // 0);
cmp_ok($rate, '<=', $bound * 1.25, 'the provider sees a bounded rate');
--- error_log
too many introspections in flight
