# Directives: inheritance and merge, and every malformed value rejected by
# `nginx -t` with an [emerg] naming the directive.
use strict;
use warnings;
use lib 't/lib';
use OAuth2Test;

op_start();
run_tests();

__DATA__

=== TEST 1: an inner "oauth2_auth off" wins over the outer "on"
--- http_config
oauth2_issuer $TEST_OP;
oauth2_audience urn:test:api;
oauth2_auth on;
oauth2_on_failure 401;
--- config
location / { empty_gif; }
location /public/ {
    oauth2_auth off;
    add_header X-Method "[$oauth2_auth_method]" always;
    empty_gif;
}
--- test
is(http_get('/')->{status}, 401, 'inherited oauth2_auth on protects /');
my $r = http_get('/public/x');
is($r->{status}, 200, 'nested oauth2_auth off is open');
is($r->{headers}{'x-method'}, '[]', 'no identity there');
$r = http_get('/public/x', { Authorization => 'Bearer garbage.garbage.garbage' });
is($r->{status}, 200, 'an invalid token does not matter where auth is off');

=== TEST 2: settings are inherited from server to location and overridden there
--- http_config
oauth2_issuer $TEST_OP;
oauth2_audience urn:test:other;
oauth2_on_failure 401;
--- config
oauth2_realm outer;
location /a { oauth2_auth on; oauth2_on_failure 401; empty_gif; }
location /b { oauth2_auth on; oauth2_realm inner; oauth2_audience urn:test:api; empty_gif; }
--- test
my $t = token();
my $r = http_get('/a', { Authorization => "Bearer $t" });
is($r->{status}, 401, 'inherited audience rejects the token');
like($r->{headers}{'www-authenticate'}, qr/realm="outer"/, 'inherited realm');
$r = http_get('/b', { Authorization => "Bearer $t" });
is($r->{status}, 200, 'overridden audience accepts it');
$r = http_get('/b');
is($r->{headers}{'www-authenticate'}, 'Bearer realm="inner"', 'overridden realm');

=== TEST 3: oauth2_on_failure pass lets anonymous requests through with empty variables
--- http_config
oauth2_issuer $TEST_OP;
oauth2_audience urn:test:api;
--- config
location / {
    oauth2_auth on;
    oauth2_on_failure pass;
    add_header X-Sub "[$oauth2_sub]" always;
    add_header X-Error "[$oauth2_error]" always;
    empty_gif;
}
--- test
my $r = http_get('/');
is($r->{status}, 200, 'anonymous passes');
is($r->{headers}{'x-sub'}, '[]', 'empty sub');
is($r->{headers}{'x-error'}, '[missing_token]', 'error says why');
$r = http_get('/', { Authorization => 'Bearer ' . token() });
is($r->{headers}{'x-sub'}, '[api-client]', 'a token still identifies');
$r = http_get('/', { Authorization => 'Bearer ' . mint('{"tamper":true}') });
is($r->{status}, 401, 'an invalid token is still rejected on a pass location');

=== TEST 4: oauth2_client_id is the default audience
--- http_config
oauth2_on_failure 401;
oauth2_issuer $TEST_OP;
oauth2_client_id urn:test:api;
--- config
location / { oauth2_auth on; empty_gif; }
--- request
GET /
--- more_headers eval
"Authorization: Bearer " . token()
--- error_code: 200

=== TEST 5: a static key set from oauth2_jwks_file, no network
--- setup
system("curl -sf " . op_url() . "/jwks -o " . servroot() . "/jwks.json") == 0 or die "jwks";
--- http_config
oauth2_on_failure 401;
oauth2_jwks_file $TEST_ROOT/jwks.json;
oauth2_audience urn:test:api;
--- config
location / { oauth2_auth on; add_header X-Error $oauth2_error always; empty_gif; }
--- test
is(http_get('/', { Authorization => 'Bearer ' . token() })->{status}, 200, 'valid with the file keys');
my $r = http_get('/', { Authorization => 'Bearer ' . mint('{"claims":{"iss":"https://anyone.example"}}') });
is($r->{status}, 200, 'no issuer configured: iss is not checked');
$r = http_get('/', { Authorization => 'Bearer ' . mint('{"key":"foreign"}') });
is($r->{status}, 401, 'a foreign key fails');

=== TEST 6: HS256 with a symmetric key from oauth2_jwks_file, when listed explicitly
--- setup
open my $f, '>', "" . servroot() . "/hs.json" or die;
print $f '{"keys":[{"kty":"oct","kid":"h1","k":"' . MIME::Base64::encode_base64url('0123456789abcdef0123456789abcdef') . '"}]}';
close $f;
--- http_config
oauth2_on_failure 401;
oauth2_jwks_file $TEST_ROOT/hs.json;
oauth2_audience api;
oauth2_algorithms HS256;
--- config
location / { oauth2_auth on; add_header X-Sub $oauth2_sub always; empty_gif; }
--- test
require Digest::SHA;
my $h = MIME::Base64::encode_base64url('{"alg":"HS256","kid":"h1","typ":"JWT"}');
my $p = MIME::Base64::encode_base64url('{"sub":"hs-user","aud":"api","exp":' . (time + 300) . '}');
my $sig = MIME::Base64::encode_base64url(Digest::SHA::hmac_sha256("$h.$p", '0123456789abcdef0123456789abcdef'));
my $r = http_get('/', { Authorization => "Bearer $h.$p.$sig" });
is($r->{status}, 200, 'HS256 token with the configured secret');
is($r->{headers}{'x-sub'}, 'hs-user', 'its subject');
my $bad = MIME::Base64::encode_base64url(Digest::SHA::hmac_sha256("$h.$p", 'wrong'));
is(http_get('/', { Authorization => "Bearer $h.$p.$bad" })->{status}, 401, 'wrong secret');

=== TEST 7: nginx -t: a bad URL in oauth2_issuer
--- http_config
oauth2_issuer ftp://example.com;
--- config
--- must_die
--- error_log
[emerg] invalid URL "ftp://example.com": the scheme must be http or https in "oauth2_issuer" directive

=== TEST 8: nginx -t: a bad time
--- http_config
oauth2_clock_skew 5x;
--- config
--- must_die
--- error_log
[emerg] invalid time value "5x" in "oauth2_clock_skew" directive

=== TEST 9: nginx -t: alg none
--- http_config
oauth2_algorithms RS256 none;
--- config
--- must_die
--- error_log
[emerg] the "none" algorithm is never accepted in "oauth2_algorithms" directive

=== TEST 10: nginx -t: an unknown algorithm
--- http_config
oauth2_algorithms RS257;
--- config
--- must_die
--- error_log
[emerg] unsupported algorithm "RS257" in "oauth2_algorithms" directive

=== TEST 11: nginx -t: bad on/off, and oauth2_auth with a word that names no provider
--- config
location / { oauth2_cookie_secure yes; }
location /x { oauth2_auth yes; }
--- must_die
--- error_log
[emerg] invalid value "yes", it must be "on" or "off" in "oauth2_cookie_secure" directive

=== TEST 11b: nginx -t: oauth2_auth with a word that names no provider
--- config
location /x { oauth2_auth yes; oauth2_on_failure 401; }
--- must_die
--- error_log
unknown provider "yes" in "oauth2_auth"

=== TEST 12: nginx -t: bad oauth2_on_failure
--- config
location / { oauth2_on_failure 403; }
--- must_die
--- error_log
invalid value "403", it must be "redirect", "401", "auto" or "pass" in "oauth2_on_failure" directive

=== TEST 13: nginx -t: a location that can redirect (the default "auto") needs the browser settings
--- http_config
oauth2_issuer $TEST_OP;
oauth2_audience api;
--- config
location / { oauth2_auth on; }
--- must_die
--- error_log
a location with "oauth2_auth on" and "oauth2_on_failure auto" can redirect to the provider and needs "oauth2_cookie_secret_file" (APIs: use "oauth2_on_failure 401")

=== TEST 14: nginx -t: a missing JWKS file
--- http_config
oauth2_jwks_file /nonexistent/jwks.json;
--- config
--- must_die
--- error_log
[emerg] cannot read "/nonexistent/jwks.json"
in "oauth2_jwks_file" directive

=== TEST 15: nginx -t: a JWKS file with no usable key
--- setup
open my $f, '>', "" . servroot() . "/empty.json" or die; print $f '{"keys":[]}'; close $f;
--- http_config
oauth2_jwks_file $TEST_ROOT/empty.json;
--- config
--- must_die
--- error_log
the JWK Set has no usable signature key (it is empty) in "oauth2_jwks_file" directive

=== TEST 16: nginx -t: protection without any key source
--- http_config
oauth2_on_failure 401;
oauth2_audience api;
--- config
location / { oauth2_auth on; }
--- must_die
--- error_log
[emerg] oauth2: "oauth2_auth" is on but none of "oauth2_issuer", "oauth2_jwks_uri" or "oauth2_jwks_file" is set

=== TEST 17: nginx -t: protection without an audience
--- http_config
oauth2_on_failure 401;
oauth2_issuer $TEST_OP;
--- config
location / { oauth2_auth on; }
--- must_die
--- error_log
"oauth2_auth" is on but neither "oauth2_audience" nor "oauth2_client_id" is set

=== TEST 18: nginx -t: HS256 without a symmetric key
--- http_config
oauth2_on_failure 401;
oauth2_issuer $TEST_OP;
oauth2_audience api;
oauth2_algorithms RS256 HS256;
--- config
location / { oauth2_auth on; }
--- must_die
--- error_log
"oauth2_algorithms" lists HS256 but neither "oauth2_jwks_file" holds a symmetric key nor is a client secret set

=== TEST 19: nginx -t: duplicate directive
--- http_config
oauth2_issuer $TEST_OP;
oauth2_issuer $TEST_OP;
--- config
--- must_die
--- error_log
[emerg] "oauth2_issuer" directive is duplicate

=== TEST 20: nginx -t: a CA file with no certificate
--- setup
open my $f, '>', "" . servroot() . "/ca.pem" or die; print $f "not a certificate\n"; close $f;
--- http_config
oauth2_ssl_trusted_certificate $TEST_ROOT/ca.pem;
--- config
--- must_die
--- error_log
holds no PEM certificate in "oauth2_ssl_trusted_certificate" directive

=== TEST 21: nginx -t: a bad oauth2_token_cache size
--- http_config
oauth2_token_cache lots;
--- config
--- must_die
--- error_log
invalid size "lots" in "oauth2_token_cache" directive

=== TEST 22: nginx -t: bad provider timeout and refresh
--- http_config
oauth2_provider_timeout 0;
--- config
--- must_die
--- error_log
"0" is too small, the minimum is 1ms in "oauth2_provider_timeout" directive

=== TEST 23: a valid full configuration passes nginx -t without the network
--- http_config
oauth2_issuer https://127.0.0.1:1/realms/x;
oauth2_audience api other;
oauth2_algorithms RS256 ES256;
oauth2_token_validation jwt;
oauth2_clock_skew 30s;
oauth2_jwks_refresh 10m;
oauth2_provider_timeout 5s;
oauth2_realm api;
--- config
location / { oauth2_auth on; oauth2_on_failure 401; empty_gif; }
--- request
GET /
--- error_code: 401

=== TEST 24: nginx -t: redirect without oauth2_client_id
--- setup
open my $f, '>', servroot() . "/c.keys" or die; print $f MIME::Base64::encode_base64('a' x 32, ''), "\n"; close $f;
--- http_config
oauth2_issuer $TEST_OP;
oauth2_cookie_secret_file $TEST_ROOT/c.keys;
oauth2_audience api;
--- config
location / { oauth2_auth on; oauth2_on_failure redirect; }
--- must_die
--- error_log
can redirect to the provider and needs "oauth2_client_id"

=== TEST 25: nginx -t: redirect without oauth2_issuer
--- setup
open my $f, '>', servroot() . "/c.keys" or die; print $f MIME::Base64::encode_base64('a' x 32, ''), "\n"; close $f;
--- http_config
oauth2_jwks_uri $TEST_OP/jwks;
oauth2_client_id nginx;
oauth2_cookie_secret_file $TEST_ROOT/c.keys;
--- config
location / { oauth2_auth on; oauth2_on_failure redirect; }
--- must_die
--- error_log
can redirect to the provider and needs "oauth2_issuer"

=== TEST 26: nginx -t: oauth2_callback without the cookie key file
--- http_config
oauth2_issuer $TEST_OP;
oauth2_client_id nginx;
--- config
location = /oauth2/callback { oauth2_callback; }
--- must_die
--- error_log
"oauth2_callback" needs "oauth2_cookie_secret_file"

=== TEST 27: nginx -t: a malformed cookie key file (the key itself is never printed)
--- setup
open my $f, '>', servroot() . "/bad.keys" or die; print $f MIME::Base64::encode_base64('sixteen-byte-key', ''), "\n"; close $f;
--- http_config
oauth2_cookie_secret_file $TEST_ROOT/bad.keys;
--- config
--- must_die
--- error_log
line 1: the key is 16 bytes, not 32 in "oauth2_cookie_secret_file" directive

=== TEST 28: nginx -t: bad cookie settings
--- http_config
oauth2_cookie_samesite sometimes;
--- config
--- must_die
--- error_log
invalid value "sometimes", it must be "lax", "strict" or "none" in "oauth2_cookie_samesite" directive

=== TEST 29: nginx -t: oauth2_callback takes no argument and only in a location
--- http_config
oauth2_callback;
--- config
--- must_die
--- error_log
"oauth2_callback" directive is not allowed here

=== TEST 30: nginx -t: an absolute redirect URI must be http(s)
--- http_config
oauth2_redirect_uri ftp://x/cb;
--- config
--- must_die
--- error_log
the scheme must be http or https in "oauth2_redirect_uri" directive

=== TEST 31: oauth2_session_store redis: a password file that cannot be read fails nginx -t
--- http_config
oauth2_session_store redis redis://127.0.0.1:6379 password_file=/etc/x prefix=a;
--- config
--- must_die
--- error_log
cannot read "/etc/x"

=== TEST 31b: oauth2_session_store shm is accepted; twice at one level is refused
--- http_config
oauth2_session_store shm zone=sessions:10m;
--- config
location / { empty_gif; }
location /x { oauth2_session_store cookie; oauth2_session_store shm zone=sessions:10m; }
--- must_die
--- error_log
"oauth2_session_store" directive is duplicate

=== TEST 31c: oauth2_session_store shm: the same zone in several places
--- http_config
oauth2_session_store shm zone=sessions:10m;
--- config
location / { empty_gif; }
location /x { oauth2_session_store shm zone=sessions:10m; empty_gif; }
--- request
GET /x
--- error_code: 200

=== TEST 32: oauth2_session_store cookie
--- http_config
oauth2_session_store cookie;
--- config
location / { empty_gif; }
--- request
GET /
--- error_code: 200
