# Bearer JWT access tokens from the real provider: accepted, rejected for
# every reason, with the status and WWW-Authenticate of SPEC §3.
use strict;
use warnings;
use lib 't/lib';
use OAuth2Test;

op_start();
run_tests();

__DATA__

=== TEST 1: a valid client_credentials token gets 200 and the identity variables
--- http_config
oauth2_on_failure 401;
oauth2_issuer $TEST_OP;
oauth2_audience urn:test:api;
--- config
location / {
    oauth2_auth on;
    add_header X-Sub $oauth2_sub always;
    add_header X-Method $oauth2_auth_method always;
    add_header X-Client $oauth2_claim_client_id always;
    add_header X-Scope $oauth2_claim_scope always;
    add_header X-Token-Len $oauth2_access_token always;
    add_header X-Error "[$oauth2_error]" always;
    empty_gif;
}
--- request
GET /
--- more_headers eval
"Authorization: Bearer " . token()
--- error_code: 200
--- response_headers
X-Sub: api-client
X-Method: bearer
X-Client: api-client
X-Scope: api:read
X-Token-Len: ~^eyJ[\w-]+\.[\w-]+\.[\w-]+$
X-Error: []
--- error_log
oauth2: loaded 2 key(s) of "http://127.0.0.1:

=== TEST 2: no token gets 401 with a bare challenge
--- http_config
oauth2_issuer $TEST_OP;
oauth2_audience urn:test:api;
--- config
location / {
    oauth2_auth on;
    oauth2_on_failure 401;
    add_header X-Error $oauth2_error always;
    empty_gif;
}
--- request
GET /
--- error_code: 401
--- response_headers
WWW-Authenticate: Bearer realm="localhost"
X-Error: missing_token

=== TEST 3: oauth2_realm sets the realm
--- http_config
oauth2_issuer $TEST_OP;
oauth2_audience urn:test:api;
--- config
location / {
    oauth2_auth on;
    oauth2_on_failure 401;
    oauth2_realm "my api";
    empty_gif;
}
--- request
GET /
--- more_headers
Accept: */*
--- error_code: 401
--- response_headers
WWW-Authenticate: Bearer realm="my api"

=== TEST 4: an expired token (signed by the provider's key)
--- http_config
oauth2_on_failure 401;
oauth2_issuer $TEST_OP;
oauth2_audience urn:test:api;
oauth2_clock_skew 10s;
--- config
location / { oauth2_auth on; add_header X-Error $oauth2_error always; empty_gif; }
--- request
GET /
--- more_headers eval
"Authorization: Bearer " . mint('{"claims":{"exp":' . (time() - 30) . ',"iat":' . (time() - 600) . '}}')
--- error_code: 401
--- response_headers
WWW-Authenticate: Bearer realm="localhost", error="invalid_token", error_description="the token has expired"
X-Error: expired
--- error_log
oauth2: bearer token rejected: expired

=== TEST 5: expiry within the clock skew is accepted
--- http_config
oauth2_on_failure 401;
oauth2_issuer $TEST_OP;
oauth2_audience urn:test:api;
oauth2_clock_skew 2m;
--- config
location / { oauth2_auth on; empty_gif; }
--- request
GET /
--- more_headers eval
"Authorization: Bearer " . mint('{"claims":{"exp":' . (time() - 30) . '}}')
--- error_code: 200

=== TEST 6: a token that is not valid yet
--- http_config
oauth2_on_failure 401;
oauth2_issuer $TEST_OP;
oauth2_audience urn:test:api;
--- config
location / { oauth2_auth on; add_header X-Error $oauth2_error always; empty_gif; }
--- request
GET /
--- more_headers eval
"Authorization: Bearer " . mint('{"claims":{"nbf":' . (time() + 600) . '}}')
--- error_code: 401
--- response_headers
X-Error: not_yet_valid
WWW-Authenticate: ~error="invalid_token"

=== TEST 7: wrong issuer
--- http_config
oauth2_on_failure 401;
oauth2_issuer $TEST_OP;
oauth2_audience urn:test:api;
--- config
location / { oauth2_auth on; add_header X-Error $oauth2_error always; empty_gif; }
--- request
GET /
--- more_headers eval
"Authorization: Bearer " . mint('{"claims":{"iss":"https://evil.example"}}')
--- error_code: 401
--- response_headers
X-Error: wrong_issuer

=== TEST 8: wrong audience (a real token for another resource)
--- http_config
oauth2_on_failure 401;
oauth2_issuer $TEST_OP;
oauth2_audience urn:test:other;
--- config
location / { oauth2_auth on; add_header X-Error $oauth2_error always; empty_gif; }
--- request
GET /
--- more_headers eval
"Authorization: Bearer " . token()
--- error_code: 401
--- response_headers
X-Error: wrong_audience
WWW-Authenticate: ~error_description="the token audience is not accepted"

=== TEST 9: one of several audiences; a real ES256 token
--- http_config
oauth2_on_failure 401;
oauth2_issuer $TEST_OP;
oauth2_audience urn:test:api urn:test:api:es256;
--- config
location / { oauth2_auth on; add_header X-Sub $oauth2_sub always; empty_gif; }
--- request
GET /
--- more_headers eval
"Authorization: Bearer " . token(resource => 'urn:test:api:es256')
--- error_code: 200
--- response_headers
X-Sub: api-client

=== TEST 10: signed by a foreign key that claims the provider's kid
--- http_config
oauth2_on_failure 401;
oauth2_issuer $TEST_OP;
oauth2_audience urn:test:api;
--- config
location / { oauth2_auth on; add_header X-Error $oauth2_error always; empty_gif; }
--- request
GET /
--- more_headers eval
my $t = token();
my ($kid) = MIME::Base64::decode_base64url((split /\./, $t)[0]) =~ /"kid":"([^"]+)"/;
"Authorization: Bearer " . mint('{"key":"foreign","header":{"kid":"' . $kid . '"}}')
--- error_code: 401
--- response_headers
X-Error: bad_signature

=== TEST 11: tampered signature
--- http_config
oauth2_on_failure 401;
oauth2_issuer $TEST_OP;
oauth2_audience urn:test:api;
--- config
location / { oauth2_auth on; add_header X-Error $oauth2_error always; empty_gif; }
--- request
GET /
--- more_headers eval
"Authorization: Bearer " . mint('{"tamper":true}')
--- error_code: 401
--- response_headers
X-Error: bad_signature

=== TEST 12: tampered payload with the original signature
--- http_config
oauth2_on_failure 401;
oauth2_issuer $TEST_OP;
oauth2_audience urn:test:api;
--- config
location / { oauth2_auth on; add_header X-Error $oauth2_error always; empty_gif; }
--- request
GET /
--- more_headers eval
my @p = split /\./, token();
my $claims = MIME::Base64::decode_base64url($p[1]);
$claims =~ s/"sub":"api-client"/"sub":"admin"/ or die "no sub";
$p[1] = MIME::Base64::encode_base64url($claims);
"Authorization: Bearer " . CORE::join('.', @p)
--- error_code: 401
--- response_headers
X-Error: bad_signature

=== TEST 13: alg none is never accepted
--- http_config
oauth2_on_failure 401;
oauth2_issuer $TEST_OP;
oauth2_audience urn:test:api;
--- config
location / { oauth2_auth on; add_header X-Error $oauth2_error always; empty_gif; }
--- request
GET /
--- more_headers eval
"Authorization: Bearer " . mint('{"key":"none"}')
--- error_code: 401
--- response_headers
X-Error: bad_algorithm

=== TEST 14: HS256 signed with the RSA public key
--- http_config
oauth2_on_failure 401;
oauth2_issuer $TEST_OP;
oauth2_audience urn:test:api;
--- config
location / { oauth2_auth on; add_header X-Error $oauth2_error always; empty_gif; }
--- request
GET /
--- more_headers eval
"Authorization: Bearer " . mint('{"key":"hs256-public"}')
--- error_code: 401
--- response_headers
X-Error: bad_algorithm

=== TEST 15: oauth2_algorithms restricts the accepted algorithms
--- http_config
oauth2_on_failure 401;
oauth2_issuer $TEST_OP;
oauth2_audience urn:test:api;
oauth2_algorithms ES256;
--- config
location / { oauth2_auth on; add_header X-Error $oauth2_error always; empty_gif; }
--- request
GET /
--- more_headers eval
"Authorization: Bearer " . token()
--- error_code: 401
--- response_headers
X-Error: bad_algorithm

=== TEST 16: garbage tokens: bad base64, wrong number of parts, 20 KB, not a JWT
--- http_config
oauth2_on_failure 401;
oauth2_issuer $TEST_OP;
oauth2_audience urn:test:api;
large_client_header_buffers 4 64k;
--- config
location / { oauth2_auth on; add_header X-Error $oauth2_error always; empty_gif; }
--- test
my @cases = (
    # not JWT-shaped: with the default "auto" these would need introspection
    ['a.b', 'unsupported_token'],
    ['a.b.c.d', 'unsupported_token'],
    ['!!!.???.***', 'malformed_token'],
    ['eyJhbGciOiJSUzI1NiJ9.@@@.abc', 'malformed_token'],
    ['bm90IGpzb24.bm90IGpzb24.bm90', 'malformed_token'],
    [('A' x 7000) . '.' . ('B' x 7000) . '.' . ('C' x 7000), 'malformed_token'],
    ['opaque-token-value', 'unsupported_token'],
);
for my $c (@cases) {
    my $r = http_get('/', { Authorization => "Bearer $c->[0]" });
    is($r->{status}, 401, "garbage " . substr($c->[0], 0, 20));
    is($r->{headers}{'x-error'}, $c->[1], "reason for " . substr($c->[0], 0, 20));
    like($r->{headers}{'www-authenticate'}, qr/error="invalid_token"/, 'invalid_token');
}
my $r = http_get('/', { Authorization => 'Bearer' });
is($r->{status}, 401, 'empty bearer');
is($r->{headers}{'x-error'}, 'malformed_token', 'empty bearer reason');
$r = http_get('/', { Authorization => 'Basic dXNlcjpwYXNz' });
is($r->{status}, 401, 'basic auth is no bearer token');
is($r->{headers}{'x-error'}, 'missing_token', 'basic -> missing_token');
is($r->{headers}{'www-authenticate'}, 'Bearer realm="localhost"', 'bare challenge for basic');

=== TEST 17: lower-case scheme and extra spaces are accepted
--- http_config
oauth2_on_failure 401;
oauth2_issuer $TEST_OP;
oauth2_audience urn:test:api;
--- config
location / { oauth2_auth on; empty_gif; }
--- request
GET /
--- more_headers eval
"Authorization: bearer    " . token()
--- error_code: 200

=== TEST 18: with "oauth2_token_validation jwt" anything not a JWT is malformed
--- http_config
oauth2_on_failure 401;
oauth2_issuer $TEST_OP;
oauth2_audience urn:test:api;
oauth2_token_validation jwt;
--- config
location / { oauth2_auth on; add_header X-Error $oauth2_error always; empty_gif; }
--- test
for my $t ('a.b', 'a.b.c.d', 'opaque-token-value') {
    my $r = http_get('/', { Authorization => "Bearer $t" });
    is($r->{status}, 401, "$t -> 401");
    is($r->{headers}{'x-error'}, 'malformed_token', "$t -> malformed_token");
}

=== TEST 19: requests wait while the keys are loading, then pass
--- http_config
oauth2_on_failure 401;
oauth2_jwks_uri $TEST_OP/jwks;
oauth2_audience urn:test:api;
--- config
location / { oauth2_auth on; empty_gif; }
--- test
# the provider answers /jwks after 1.5 s: the first requests arrive while
# nginx's first fetch is still under way, wait, and then pass
my $t = token();
my $t0 = Time::HiRes::time();
my $r = http_get('/', { Authorization => "Bearer $t" });
my $waited = Time::HiRes::time() - $t0;
op_ctl('/__test/delay', '{"jwks":0}');
is($r->{status}, 200, 'the waiting request passes once the keys are there');
cmp_ok($waited, '>', 0.8, "it waited for the keys ($waited s)");
--- setup
op_ctl('/__test/delay', '{"jwks":1500}');

=== TEST 20: jku, x5u and embedded jwk headers are ignored; crit is refused
--- http_config
oauth2_on_failure 401;
oauth2_issuer $TEST_OP;
oauth2_audience urn:test:api;
--- config
location / { oauth2_auth on; add_header X-Error $oauth2_error always; empty_gif; }
--- test
my $r = http_get('/', { Authorization => 'Bearer ' . mint('{"key":"foreign","header":{"jku":"' . op_url() . '/__test/stats","x5u":"http://127.0.0.1:1/x","kid":"attacker"}}') });
is($r->{status}, 401, 'foreign key announced by jku: 401');
is($r->{headers}{'x-error'}, 'unknown_key', 'the jku key set was not used');
$r = http_get('/', { Authorization => 'Bearer ' . mint('{"key":"foreign","header":{"kid":null,"jwk":{"kty":"RSA","n":"AQAB","e":"AQAB"}}}') });
is($r->{status}, 401, 'embedded jwk: 401');
is($r->{headers}{'x-error'}, 'bad_signature', 'the embedded key was not used');
$r = http_get('/', { Authorization => 'Bearer ' . mint('{"header":{"crit":["exp"]}}') });
is($r->{status}, 401, 'crit: 401');
is($r->{headers}{'x-error'}, 'unsupported_crit', 'reason unsupported_crit');
$r = http_get('/', { Authorization => 'Bearer ' . mint('{"header":{"typ":"JOSE+JSON"}}') });
is($r->{headers}{'x-error'}, 'bad_type', 'typ must be JWT or at+jwt');
$r = http_get('/', { Authorization => 'Bearer ' . mint('{"claims":{"exp":"9999999999"}}') });
is($r->{headers}{'x-error'}, 'bad_time_claim', 'exp as a string');

=== TEST 21: $oauth2_email and claims with arrays, objects and control characters
--- http_config
oauth2_on_failure 401;
oauth2_issuer $TEST_OP;
oauth2_audience urn:test:api;
--- config
location / {
    oauth2_auth on;
    add_header X-Email $oauth2_email always;
    add_header X-Groups $oauth2_claim_groups always;
    add_header X-Obj $oauth2_claim_realm_access always;
    add_header X-Evil "[$oauth2_claim_evil]" always;
    add_header X-Absent "[$oauth2_claim_absent]" always;
    empty_gif;
}
--- request
GET /
--- more_headers eval
"Authorization: Bearer " . mint('{"claims":{"email":"a@example.test","groups":["admin","dev"],"realm_access":{"roles":["x"]},"evil":"a\r\nX-Injected: 1"}}')
--- error_code: 200
--- response_headers
X-Email: a@example.test
X-Groups: admin,dev
X-Obj: {"roles":["x"]}
X-Evil: [aX-Injected: 1]
X-Absent: []
!X-Injected

=== TEST 22: a cached token does not vouch for one that differs only in the middle
--- http_config
oauth2_on_failure 401;
oauth2_issuer $TEST_OP;
oauth2_audience urn:test:api;
--- config
location / { oauth2_auth on; add_header X-Sub $oauth2_sub always; add_header X-Error $oauth2_error always; empty_gif; }
--- test
# the cache finds a token by its length and ends, and must then compare it
# whole: the same length, the same first and last bytes, another subject
my $t = token();
my @p = split /\./, $t;
my $claims = MIME::Base64::decode_base64url($p[1]);
$claims =~ s/"sub":"api-client"/"sub":"api-clienX"/ or die "no sub";
$p[1] = MIME::Base64::encode_base64url($claims);
my $forged = CORE::join('.', @p);
is(length($forged), length($t), 'the forged token has the same length');
is(substr($forged, 0, 48), substr($t, 0, 48), 'the same first 48 bytes');
is(substr($forged, -48), substr($t, -48), 'the same last 48 bytes');
isnt($forged, $t, 'and differs in the middle');
for my $i (1 .. 3) {
    my $r = http_get('/', { Authorization => "Bearer $t" });
    is($r->{status}, 200, "the real token, request $i (cached after the first)");
    is($r->{headers}{'x-sub'}, 'api-client', 'its subject');
    $r = http_get('/', { Authorization => "Bearer $forged" });
    is($r->{status}, 401, "the forged one, request $i: 401");
    is($r->{headers}{'x-error'}, 'bad_signature', 'checked in full, not taken from the cache');
}
