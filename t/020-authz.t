# Per-location rules (oauth2_require_claim, oauth2_require_scope) for bearer
# tokens and sessions, opaque tokens by introspection, $oauth2_error in logs.
use strict;
use warnings;
use lib 't/lib';
use OAuth2Test;

my $port = fixed_port();
op_start(redirect_uri => ["http://127.0.0.1:$port/oauth2/callback"]);
write_cookie_keys('cookie.keys', 'z');
run_tests();


__DATA__

=== TEST 1: oauth2_require_claim for bearer tokens: equal, one of, arrays, nested, regex, all must hold
--- http_config
oauth2_issuer $TEST_OP;
oauth2_audience urn:test:api;
oauth2_on_failure 401;
--- config
location /one-of { oauth2_auth on; oauth2_require_claim sub alice bob; add_header X-Error $oauth2_error always; empty_gif; }
location /array { oauth2_auth on; oauth2_require_claim groups admins; empty_gif; }
location /nested { oauth2_auth on; oauth2_require_claim realm_access.roles admin; empty_gif; }
location /regex { oauth2_auth on; oauth2_require_claim email "~@corp\.example$"; empty_gif; }
location /all {
    oauth2_auth on;
    oauth2_require_claim sub alice;
    oauth2_require_claim groups admins;
    add_header X-Error $oauth2_error always;
    empty_gif;
}
--- test
my $alice = mint('{"claims":{"sub":"alice","email":"alice@corp.example","groups":["dev","admins"],"realm_access":{"roles":["admin","user"]}}}');
my $carol = mint('{"claims":{"sub":"carol","email":"carol@evil.example","groups":["dev"],"realm_access":{"roles":["user"]}}}');
for my $loc (qw(/one-of /array /nested /regex /all)) {
    is(http_get($loc, bearer($alice))->{status}, 200, "alice passes $loc");
    is(http_get($loc, bearer($carol))->{status}, 403, "carol is refused at $loc");
}
my $r = http_get('/one-of', bearer($carol));
is($r->{headers}{'x-error'}, 'claim_mismatch', '$oauth2_error claim_mismatch');
my $half = mint('{"claims":{"sub":"alice","groups":["dev"]}}');
is(http_get('/all', bearer($half))->{status}, 403, 'one rule of two failing is enough to refuse');
is(http_get('/one-of')->{status}, 401, 'no token is still 401, not 403');

=== TEST 2: oauth2_require_scope: scope string and scp array; insufficient_scope challenge
--- http_config
oauth2_issuer $TEST_OP;
oauth2_audience urn:test:api;
oauth2_on_failure 401;
--- config
location /read { oauth2_auth on; oauth2_require_scope api:read; empty_gif; }
location /write { oauth2_auth on; oauth2_require_scope api:read api:write; add_header X-Error $oauth2_error always; empty_gif; }
--- test
my $read = token(scope => 'api:read');
my $both = token(scope => 'api:read api:write');
is(http_get('/read', bearer($read))->{status}, 200, 'real token with scope api:read');
my $r = http_get('/write', bearer($read));
is($r->{status}, 403, 'missing api:write: 403');
is($r->{headers}{'www-authenticate'}, 'Bearer realm="localhost", error="insufficient_scope", scope="api:read api:write"', 'the challenge names the scopes');
is($r->{headers}{'x-error'}, 'insufficient_scope', '$oauth2_error');
is(http_get('/write', bearer($both))->{status}, 200, 'both scopes: 200');
my $scp = mint('{"claims":{"scope":null,"scp":["api:read","api:write"]}}');
is(http_get('/write', bearer($scp))->{status}, 200, 'scp array');
my $none = mint('{"claims":{"scope":null}}');
is(http_get('/read', bearer($none))->{status}, 403, 'no scope at all: 403');

=== TEST 3: rules and variables for cookie sessions
--- http_config
oauth2_issuer $TEST_OP;
oauth2_client_id nginx;
oauth2_client_secret nginx-secret;
oauth2_cookie_secret_file $TEST_ROOT/cookie.keys;
oauth2_cookie_secure off;
oauth2_scope openid email api:read;
--- config
location / {
    oauth2_auth on;
    add_header X-Sub $oauth2_sub always;
    add_header X-Email $oauth2_email always;
    add_header X-Method $oauth2_auth_method always;
    add_header X-Claim-Iss $oauth2_claim_iss always;
    add_header X-Has-Token $oauth2_access_token always;
    empty_gif;
}
location /alice-only { oauth2_auth on; oauth2_require_claim sub alice; empty_gif; }
location /bob-only { oauth2_auth on; oauth2_require_claim sub bob; add_header X-Error $oauth2_error always; empty_gif; }
location /read-scope { oauth2_auth on; oauth2_require_scope api:read; empty_gif; }
location /admin-scope { oauth2_auth on; oauth2_require_scope admin; empty_gif; }
location = /oauth2/callback { oauth2_callback; }
--- test
my $base = "http://127.0.0.1:" . nginx_port();
my $b = browser();
is($b->login("$base/")->{status}, 302, 'logged in as alice');
my $r = $b->get("$base/");
is($r->{headers}{'x-sub'}, 'alice', '$oauth2_sub');
is($r->{headers}{'x-email'}, 'alice@example.test', '$oauth2_email');
is($r->{headers}{'x-method'}, 'cookie', '$oauth2_auth_method');
is($r->{headers}{'x-claim-iss'}, op_url(), '$oauth2_claim_iss');
ok(length($r->{headers}{'x-has-token'} // '') > 10, '$oauth2_access_token is the session access token');
is($b->get("$base/alice-only")->{status}, 200, 'claim rule holds for the session');
$r = $b->get("$base/bob-only");
is($r->{status}, 403, 'claim rule fails for the session: 403');
is($r->{headers}{'x-error'}, 'claim_mismatch', '$oauth2_error');
ok(!defined $r->{headers}{'www-authenticate'}, 'no bearer challenge for a cookie session');
is($b->get("$base/read-scope")->{status}, 200, 'the session access token has scope api:read');
is($b->get("$base/admin-scope")->{status}, 403, 'scope admin not granted: 403');

=== TEST 4: opaque tokens by introspection: active, revoked, expired; one call for many requests
--- http_config
oauth2_issuer $TEST_OP;
oauth2_client_id nginx;
oauth2_client_secret nginx-secret;
oauth2_audience urn:test:opaque urn:test:opaque:short;
oauth2_on_failure 401;
oauth2_clock_skew 0;
--- config
location / {
    oauth2_auth on;
    add_header X-Sub $oauth2_sub always;
    add_header X-Client $oauth2_claim_client_id always;
    add_header X-Error $oauth2_error always;
    empty_gif;
}
location /scoped { oauth2_auth on; oauth2_require_scope api:write; empty_gif; }
--- test
my $t = token(resource => 'urn:test:opaque');
unlike($t, qr/\./, 'the provider issued an opaque token');
my $before = op_stat('/token/introspection');
my $r = http_get('/', bearer($t));
is($r->{status}, 200, 'active opaque token: 200');
is($r->{headers}{'x-client'}, 'api-client', 'claims from introspection');
is(http_get('/', bearer($t))->{status}, 200, 'again') for 1 .. 9;
is(op_stat('/token/introspection') - $before, 1, 'one introspection call for 10 requests (cached)');
is(http_get('/scoped', bearer($t))->{status}, 403, 'scope rules apply to introspected tokens');
# revoked before use
my $rv = token(resource => 'urn:test:opaque');
my $resp = HTTP::Tiny->new->post_form(op_url() . '/token/revocation', { token => $rv },
    { headers => { authorization => 'Basic ' . MIME::Base64::encode_base64('api-client:api-secret', '') } });
ok($resp->{success}, 'revoked at the provider');
$r = http_get('/', bearer($rv));
is($r->{status}, 401, 'revoked token: 401');
is($r->{headers}{'x-error'}, 'inactive_token', 'reason inactive_token');
like($r->{headers}{'www-authenticate'}, qr/error="invalid_token"/, 'invalid_token');
# short-lived: valid, then expired
my $short = token(resource => 'urn:test:opaque:short');
is(http_get('/', bearer($short))->{status}, 200, 'short-lived token valid');
sleep 4;
$r = http_get('/', bearer($short));
is($r->{status}, 401, 'after its exp: 401 (the cache never outlives exp)');
is(http_get('/', bearer('not-a-real-token'))->{status}, 401, 'unknown opaque token: 401');

=== TEST 5: provider down during introspection: 503, never 401
--- http_config
oauth2_issuer $TEST_OP;
oauth2_client_id nginx;
oauth2_client_secret nginx-secret;
oauth2_audience urn:test:opaque;
oauth2_on_failure 401;
oauth2_provider_timeout 2s;
--- config
location / { oauth2_auth on; add_header X-Error $oauth2_error always; empty_gif; }
--- test
my $t = token(resource => 'urn:test:opaque');
sleep 0.3;
op_stop();
my $r = http_get('/', bearer($t));
is($r->{status}, 503, 'introspection impossible: 503');
ok($r->{headers}{'retry-after'}, 'Retry-After');
is($r->{headers}{'x-error'}, 'provider_unavailable', 'reason');
op_start();

=== TEST 6: nginx -t: a bad regex in oauth2_require_claim
--- http_config
oauth2_require_claim email "~(unclosed";
--- config
--- must_die
--- error_log
invalid regex "(unclosed"
in "oauth2_require_claim" directive

=== TEST 7: nginx -t: introspection needs client credentials
--- http_config
oauth2_issuer $TEST_OP;
oauth2_audience api;
oauth2_token_validation introspection;
oauth2_on_failure 401;
--- config
location / { oauth2_auth on; }
--- must_die
--- error_log
"oauth2_token_validation introspection" needs "oauth2_issuer", "oauth2_client_id" and a client secret

=== TEST 8: $oauth2_error in the access log for each kind of refusal; CORS preflight on a 401 location
--- http_config
oauth2_issuer $TEST_OP;
oauth2_client_id nginx;
oauth2_client_secret nginx-secret;
oauth2_audience urn:test:api urn:test:opaque;
oauth2_on_failure 401;
oauth2_clock_skew 0;
log_format why '$request_uri $status [$oauth2_error]';
--- config
access_log logs/why.log why;
location / { oauth2_auth on; empty_gif; }
location /scoped { oauth2_auth on; oauth2_require_scope admin; empty_gif; }
location /claimed { oauth2_auth on; oauth2_require_claim sub root; empty_gif; }
--- test
my @cases = (
    ['/?missing', undef, 'missing_token'],
    ['/?malformed', 'a.b.c', 'malformed_token'],
    ['/?signature', mint('{"tamper":true}'), 'bad_signature'],
    ['/?expired', mint('{"claims":{"exp":' . (time() - 10) . '}}'), 'expired'],
    ['/?audience', mint('{"claims":{"aud":"other"}}'), 'wrong_audience'],
    ['/?issuer', mint('{"claims":{"iss":"https://evil"}}'), 'wrong_issuer'],
    ['/?alg', mint('{"key":"none"}'), 'bad_algorithm'],
    ['/?kid', mint('{"header":{"kid":"nope"}}'), 'unknown_key'],
    ['/?inactive', 'opaque-but-unknown', 'inactive_token'],
    ['/scoped?scope', mint('{}'), 'insufficient_scope'],
    ['/claimed?claim', mint('{}'), 'claim_mismatch'],
);
for my $c (@cases) {
    http_get($c->[0], $c->[1] ? bearer($c->[1]) : {});
}
my $pre = http_get('/', { 'access-control-request-method' => 'POST', origin => 'http://x' }, 'OPTIONS');
isnt($pre->{status}, 401, 'CORS preflight passes unauthenticated');
my $plain = http_get('/', {}, 'OPTIONS');
is($plain->{status}, 401, 'a plain OPTIONS is not a preflight');
sleep 0.2;
open my $l, '<', servroot() . '/logs/why.log' or die;
my $log = do { local $/; <$l> };
for my $c (@cases) {
    like($log, qr/^\Q$c->[0]\E (401|403) \[\Q$c->[2]\E\]$/m, "log line for $c->[2]");
}
