# Sessions in Redis (SPEC §8) for a fleet: two nginx instances (two
# prefixes, two ports) share one real redis-server. Login at one, the
# session works at the other; sign-out and the provider's back-channel
# logout reach both within a second; a login state is single-use across
# them; the store holds no token in clear; and the faults: Redis down at
# start, killed, restarted, paused longer than the timeout.
use strict;
use warnings;
use lib 't/lib';
use OAuth2Test;

my $port = fixed_port();
my $port2 = fixed_port2();
op_start(
    redirect_uri => ["http://127.0.0.1:$port/oauth2/callback", "http://127.0.0.1:$port2/oauth2/callback"],
    backchannel_uri => "http://127.0.0.1:$port/oauth2/backchannel",
);
write_cookie_keys('cookie.keys', 'r');
redis_port();
run_tests();

sub at {
    my ($p, $path, $cookie) = @_;
    HTTP::Tiny->new(keep_alive => 0)->get("http://127.0.0.1:$p$path", { headers => { cookie => "oauth2_session=$cookie" } });
}

__DATA__

=== TEST 1: nginx -t: a URL that is not Redis's
--- http_config
oauth2_session_store redis http://127.0.0.1:6379;
--- config
location / { }
--- must_die
--- error_log
the scheme must be redis://, rediss:// or unix:/path

=== TEST 2: nginx -t: an unknown parameter, an unreadable password file
--- http_config
oauth2_session_store redis redis://127.0.0.1:6379 passwd=x;
--- config
location / { }
--- must_die
--- error_log
invalid parameter "passwd=x"

=== TEST 3: a fleet: login at one nginx, the session works at the other; the store holds no token; a small cookie
--- setup
redis_start();
--- http_config
oauth2_issuer $TEST_OP;
oauth2_client_id nginx;
oauth2_client_secret nginx-secret;
oauth2_cookie_secret_file $TEST_ROOT/cookie.keys;
oauth2_cookie_secure off;
oauth2_session_store redis $TEST_REDIS prefix=t3:;
--- config
location / { oauth2_auth on; oauth2_on_failure 401; add_header X-AT $oauth2_access_token; empty_gif; }
location /app { oauth2_auth on; empty_gif; }
location = /oauth2/callback { oauth2_callback; }
location = /logout { oauth2_sign_out; }
--- test
nginx2_start();
my ($p1, $p2) = (nginx_port(), fixed_port2());
my $b = browser();
my $r = $b->login("http://127.0.0.1:$p1/app");
is($r->{status}, 302, 'logged in at the first nginx');
my $c = $b->cookie('oauth2_session');
ok(length($c) < 200, 'the cookie is under 200 bytes (' . length($c) . ')');
my $x = main::at($p2, '/api', $c);
is($x->{status}, 200, 'the session works at the second nginx');
my $at = $x->{headers}{'x-at'};
ok(length($at) > 10, 'the session has an access token');
is(main::at($p1, '/api', $c)->{status}, 200, 'and at the first');
# a dump of the store: keys and values
my @keys = grep { length } split /\n/, redis_cli('--scan', '--pattern', 't3:*');
ok(scalar(grep { /^t3:s:[0-9a-f]{32}$/ } @keys) == 1, 'one session record: ' . join(' ', @keys));
my $dump = join("\n", map { my $t = redis_cli('TYPE', $_); $t =~ /set/ ? redis_cli('SMEMBERS', $_) : redis_cli('GET', $_) } @keys);
ok(length($dump) > 500, 'the dump has the sealed record (' . length($dump) . ' bytes)');
ok(index($dump, $at) < 0, 'the access token is not in the store');
ok($dump !~ /alice/, 'nor the user (the ID token)');
# sign-out at the first: refused at the second within a second
is($b->get("http://127.0.0.1:$p1/logout")->{status}, 302, 'signed out at the first');
sleep 1.05;
is(main::at($p2, '/api', $c)->{status}, 401, 'refused at the second within 1 s');
is(main::at($p1, '/api', $c)->{status}, 401, 'and at the first');
--- error_log
oauth2: signed out

=== TEST 4: a back-channel logout from the provider ends the session on both
--- setup
redis_start() unless OAuth2Test::port_open(redis_port());
--- http_config
oauth2_issuer $TEST_OP;
oauth2_client_id nginx;
oauth2_client_secret nginx-secret;
oauth2_cookie_secret_file $TEST_ROOT/cookie.keys;
oauth2_cookie_secure off;
oauth2_session_store redis $TEST_REDIS;
--- config
location / { oauth2_auth on; oauth2_on_failure 401; empty_gif; }
location /app { oauth2_auth on; empty_gif; }
location = /oauth2/callback { oauth2_callback; }
location = /oauth2/backchannel { oauth2_backchannel_logout; }
--- test
nginx2_start();
my ($p1, $p2) = (nginx_port(), fixed_port2());
my $b = browser();
$b->login("http://127.0.0.1:$p2/app");
my $c = $b->cookie('oauth2_session');
is(main::at($p1, '/api', $c)->{status}, 200, 'works at the first');
is(main::at($p2, '/api', $c)->{status}, 200, 'works at the second');
my $r = logout_at_provider($b);
ok($r->{status} =~ /^(200|30[23])$/, "logged out at the provider ($r->{status})");
sleep 1.05;
is(main::at($p1, '/api', $c)->{status}, 401, 'refused at the first');
is(main::at($p2, '/api', $c)->{status}, 401, 'refused at the second');
--- error_log
oauth2: back-channel logout: 1 session(s) ended

=== TEST 5: a login state is used once across the fleet
--- setup
redis_start() unless OAuth2Test::port_open(redis_port());
--- http_config
oauth2_issuer $TEST_OP;
oauth2_client_id nginx;
oauth2_client_secret nginx-secret;
oauth2_cookie_secret_file $TEST_ROOT/cookie.keys;
oauth2_cookie_secure off;
oauth2_session_store redis $TEST_REDIS;
--- config
location / { oauth2_auth on; empty_gif; }
location = /oauth2/callback { oauth2_callback; }
--- test
nginx2_start();
my ($p1, $p2) = (nginx_port(), fixed_port2());
my $b = browser();
my $r = $b->get("http://127.0.0.1:$p1/app", { accept => 'text/html' });
my ($name) = grep { /^oauth2_session_st_/ } $b->cookie_names;
my $value = $b->cookie($name);
my $back = $b->login_at_provider($r->{headers}{location}, 'alice');
my $cb = $back->{headers}{location};
is($b->get($cb)->{status}, 302, 'the callback at the first logs in');
(my $cb2 = $cb) =~ s/:$p1\//:$p2\//;
my $again = HTTP::Tiny->new->get($cb2, { headers => { cookie => "$name=$value" } });
is($again->{status}, 400, 'the same state at the second nginx is refused');

=== TEST 6: Redis down at start, then up: 503 + Retry-After (no 401, no loop), bearer and public unharmed, recovery by itself
--- setup
redis_stop();
--- http_config
oauth2_issuer $TEST_OP;
oauth2_client_id nginx;
oauth2_client_secret nginx-secret;
oauth2_audience urn:test:api;
oauth2_cookie_secret_file $TEST_ROOT/cookie.keys;
oauth2_cookie_secure off;
oauth2_session_store redis $TEST_REDIS;
--- config
location / { oauth2_auth on; oauth2_on_failure 401; empty_gif; }
location /app { oauth2_auth on; empty_gif; }
location /public { empty_gif; }
location = /oauth2/callback { oauth2_callback; }
--- test
my $p1 = nginx_port();
# a cookie of a session this configuration would open (made while Redis ran)
my $b = browser();
my $r = $b->get("http://127.0.0.1:$p1/app", { accept => 'text/html' });
is($r->{status}, 302, 'no session: a login (the store is not needed for that)');
my $back = $b->login_at_provider($r->{headers}{location}, 'alice');
my $cb = $b->get($back->{headers}{location});
is($cb->{status}, 503, 'the callback cannot take the state: 503');
ok(defined $cb->{headers}{'retry-after'}, 'with Retry-After');
is(HTTP::Tiny->new->get("http://127.0.0.1:$p1/api", { headers => bearer(token()) })->{status}, 200, 'bearer tokens keep working');
is(HTTP::Tiny->new->get("http://127.0.0.1:$p1/public")->{status}, 200, 'public locations too');
redis_start();
# the worker tries again after its backoff (at most 2 s)
my ($b2, $st);
for (1 .. 12) {
    $b2 = browser();
    $st = eval { $b2->login("http://127.0.0.1:$p1/app")->{status} } // 0;
    last if $st == 302;
    sleep 0.5;
}
is($st, 302, 'Redis back: a login works');
is($b2->get("http://127.0.0.1:$p1/api")->{status}, 200, 'and its session');
--- error_log
oauth2: callback: the session store is unavailable

=== TEST 7: Redis killed, paused, restarted: 503 + Retry-After, never 401; bearer unharmed; back by itself
--- setup
redis_start() unless OAuth2Test::port_open(redis_port());
--- http_config
oauth2_issuer $TEST_OP;
oauth2_client_id nginx;
oauth2_client_secret nginx-secret;
oauth2_audience urn:test:api;
oauth2_cookie_secret_file $TEST_ROOT/cookie.keys;
oauth2_cookie_secure off;
oauth2_session_store redis $TEST_REDIS;
--- config
location / { oauth2_auth on; oauth2_on_failure 401; empty_gif; }
location /app { oauth2_auth on; empty_gif; }
location /public { empty_gif; }
location = /oauth2/callback { oauth2_callback; }
--- test
my $p1 = nginx_port();
my $b = browser();
$b->login("http://127.0.0.1:$p1/app");
my $c = $b->cookie('oauth2_session');
is(main::at($p1, '/api', $c)->{status}, 200, 'the session works');
# paused longer than the store timeout
redis_signal('STOP');
sleep 1.05;
my $t0 = time;
my $x = main::at($p1, '/api', $c);
my $took = time - $t0;
is($x->{status}, 503, 'paused: 503');
ok(defined $x->{headers}{'retry-after'}, 'with Retry-After');
ok($took < 3, sprintf('answered within the store timeout (%.2f s)', $took));
is(main::at($p1, '/app', $c)->{status}, 503, 'no redirect to the provider either');
is(HTTP::Tiny->new->get("http://127.0.0.1:$p1/api", { headers => bearer(token()) })->{status}, 200, 'bearer tokens keep working');
my $t1 = time;
is(HTTP::Tiny->new->get("http://127.0.0.1:$p1/public")->{status}, 200, 'public locations too');
ok(time - $t1 < 0.5, 'at once');
redis_signal('CONT');
sleep 0.3;
is(main::at($p1, '/api', $c)->{status}, 200, 'resumed: the session works again');
# killed: nothing answers
redis_stop();
sleep 1.05;
my $k = main::at($p1, '/api', $c);
is($k->{status}, 503, 'killed: 503');
# restarted (no persistence: the old session is gone, a new login works)
redis_start();
my $after;
for (1 .. 40) { $after = main::at($p1, '/api', $c)->{status}; last if $after != 503; sleep 0.25 }
is($after, 401, 'restarted: the lost session is simply not there (401, not 503)');
my $b2 = browser();
is($b2->login("http://127.0.0.1:$p1/app")->{status}, 302, 'a new login works');
is($b2->get("http://127.0.0.1:$p1/api")->{status}, 200, 'and its session');
--- error_log
the session store is unavailable
--- no_error_log
[crit]
