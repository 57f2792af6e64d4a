# A misbehaving provider: too slow, a key set replaced by garbage or by an
# empty set, a token endpoint failing at the callback. Nobody gets in, nothing
# crashes, the keys in use keep working, and every fault is logged.
use strict;
use warnings;
use lib 't/lib';
use OAuth2Test;

my $port = fixed_port();
op_start(redirect_uri => ["http://127.0.0.1:$port/oauth2/callback"]);
write_cookie_keys('cookie.keys', 'q');
run_tests();


__DATA__

=== TEST 1: a provider slower than oauth2_provider_timeout: 503 quickly, then recovery
--- setup
$main::tok = token();
op_fault('{"delay":2500}');
--- http_config
oauth2_issuer $TEST_OP;
oauth2_audience urn:test:api;
oauth2_on_failure 401;
oauth2_provider_timeout 500ms;
--- config
location / { oauth2_auth on; empty_gif; }
location /open { empty_gif; }
--- test
my $t = $main::tok;
sleep 0.8;
my $t0 = time;
my $r = http_get('/', { Authorization => "Bearer $t" });
is($r->{status}, 503, 'no keys after a timeout: 503');
# (under valgrind everything is ~20 times slower: the bound scales with it)
cmp_ok(time - $t0, '<', $ENV{TEST_NGINX_VALGRIND} ? 20 : 1, 'answered without waiting for the slow provider');
is(http_get('/open')->{status}, 200, 'other locations unaffected');
op_fault('{"delay":0}');
my $code = 0;
for (1 .. 60) {
    $code = http_get('/', { Authorization => "Bearer $t" })->{status};
    last if $code == 200;
    sleep 0.25;
}
is($code, 200, 'recovered once the provider answers in time');
--- error_log
while loading keys of
timed out

=== TEST 2: the key set replaced by garbage, then by an empty set: old keys kept, errors logged
--- http_config
oauth2_issuer $TEST_OP;
oauth2_audience urn:test:api;
oauth2_on_failure 401;
oauth2_jwks_refresh 1s;
--- config
location / { oauth2_auth on; empty_gif; }
--- test
my $t = token();
is(http_get('/', { Authorization => "Bearer $t" })->{status}, 200, 'keys loaded');
op_fault('{"jwks":"garbage"}');
sleep 2.2;
is(http_get('/', { Authorization => "Bearer $t" })->{status}, 200, 'garbage key set: old keys still used');
is(http_get('/', { Authorization => 'Bearer ' . mint('{"tamper":true}') })->{status}, 401, 'and nothing else gets in');
is(http_get('/', { Authorization => 'Bearer ' . mint('{"header":{"kid":"rotated?"}}') })->{status}, 503, 'an unknown kid cannot be decided meanwhile: 503');
op_fault('{"jwks":"empty"}');
sleep 2.2;
is(http_get('/', { Authorization => "Bearer $t" })->{status}, 200, 'empty key set: old keys still used');
op_fault('{"jwks":null}');
--- error_log
invalid JWK Set
the JWK Set has no usable signature key (it is empty)
keeping the keys in use

=== TEST 3: the token endpoint fails at the callback (500, then invalid JSON): 502, no session
--- http_config
oauth2_issuer $TEST_OP;
oauth2_client_id nginx;
oauth2_client_secret nginx-secret;
oauth2_cookie_secret_file $TEST_ROOT/cookie.keys;
oauth2_cookie_secure off;
--- config
location / { oauth2_auth on; empty_gif; }
location = /oauth2/callback { oauth2_callback; }
--- test
my $base = "http://127.0.0.1:" . nginx_port();
for my $fault ('{"token":500}', '{"token":"badjson"}') {
    my $b = browser();
    my $r = $b->get("$base/app", { accept => 'text/html' });
    my $back = $b->login_at_provider($r->{headers}{location}, 'alice');
    op_fault($fault);
    my $cb = $b->get(OAuth2Browser::absolute($base, $back->{headers}{location}));
    op_fault('{"token":null}');
    is($cb->{status}, 502, "token endpoint fault $fault: 502");
    unlike($cb->{content}, qr/internal error/, 'the provider page is not reflected');
    ok(!defined $b->cookie('oauth2_session'), 'no session');
}
--- error_log
oauth2: callback: the token endpoint answered 500
oauth2: callback: invalid token response
