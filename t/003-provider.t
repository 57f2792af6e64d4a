# The provider over the network: keys fetched without blocking, key rotation
# picked up on an unknown kid, the provider down at start and after the keys
# were loaded, HTTPS with a trusted and an untrusted certificate.
use strict;
use warnings;
use lib 't/lib';
use OAuth2Test;

op_start();
run_tests();

sub kid_of { my ($t) = @_; (MIME::Base64::decode_base64url((split /\./, $t)[0]) =~ /"kid":"([^"]+)"/)[0] }

__DATA__

=== TEST 1: a key rotated in at the provider is picked up on its unknown kid, without restart
--- http_config
oauth2_on_failure 401;
oauth2_issuer $TEST_OP;
oauth2_audience urn:test:api;
--- config
location / { oauth2_auth on; add_header X-Error $oauth2_error always; empty_gif; }
--- test
my $old = token();
is(http_get('/', { Authorization => "Bearer $old" })->{status}, 200, 'old key works');
my $jwks_before = op_stat('/jwks');
my $kid = op_ctl('/__test/rotate');
my $new = token();
is(main::kid_of($new), $kid, 'the provider now signs with the new key');
my $r = http_get('/', { Authorization => "Bearer $new" });
is($r->{status}, 200, 'the new kid triggers a refetch and passes');
is(http_get('/', { Authorization => "Bearer $old" })->{status}, 200, 'the old key still works');
is(op_stat('/jwks') - $jwks_before, 1, 'exactly one refetch of the key set');
# an unknown kid again within 30 s: no second refetch, a 401
$r = http_get('/', { Authorization => 'Bearer ' . mint('{"header":{"kid":"no-such-kid"}}') });
is($r->{status}, 401, 'unknown kid -> 401');
is($r->{headers}{'x-error'}, 'unknown_key', 'reason unknown_key');
$r = http_get('/', { Authorization => 'Bearer ' . mint('{"header":{"kid":"another-unknown"}}') });
is($r->{status}, 401, 'second unknown kid -> 401');
is(op_stat('/jwks') - $jwks_before, 1, 'still one refetch: at most one per 30 s');

=== TEST 2: provider down after the keys were loaded: keys in use keep working
--- http_config
oauth2_on_failure 401;
oauth2_issuer $TEST_OP;
oauth2_audience urn:test:api;
oauth2_jwks_refresh 1s;
--- config
location / { oauth2_auth on; add_header X-Error $oauth2_error always; empty_gif; }
--- test
my $t = token();
my $unknown = mint('{"header":{"kid":"rotated-later"}}');
is(http_get('/', { Authorization => "Bearer $t" })->{status}, 200, 'loaded');
op_stop();
sleep 2.5;   # a few refreshes fail meanwhile
my $r = http_get('/', { Authorization => "Bearer $t" });
is($r->{status}, 200, 'still valid with the provider down');
$r = http_get('/', { Authorization => "Bearer $unknown" });
is($r->{status}, 503, 'an unknown kid cannot be decided while the provider is down');
like($r->{headers}{'retry-after'} // '', qr/^\d+$/, 'Retry-After is set');
op_start();
--- error_log
keeping the keys in use
while refreshing keys of "http://127.0.0.1:

=== TEST 3: provider down at start: 503 with Retry-After, never 401; then up: 200
--- setup
op_stop();
--- http_config
oauth2_on_failure 401;
oauth2_issuer $TEST_OP;
oauth2_audience urn:test:api;
oauth2_provider_timeout 1s;
--- config
location / { oauth2_auth on; add_header X-Error $oauth2_error always; empty_gif; }
location /open { empty_gif; }
--- test
sleep 0.3;
my $r = http_get('/', { Authorization => 'Bearer eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln' });
is($r->{status}, 503, 'nothing can decide -> 503');
like($r->{headers}{'retry-after'} // '', qr/^[1-9]\d*$/, 'Retry-After');
is($r->{headers}{'x-error'}, 'provider_unavailable', 'reason provider_unavailable');
is(http_get('/open')->{status}, 200, 'the worker serves other locations meanwhile');
is(http_get('/')->{status}, 401, 'no token is still 401 (nothing to validate)');
op_start();
my $t = token();
my $code = 0;
for (1 .. 80) {   # the fetcher retries with backoff 1, 2, 4 s ...
    $code = http_get('/', { Authorization => "Bearer $t" })->{status};
    last if $code == 200;
    sleep 0.25;
}
is($code, 200, 'the provider came up: the token passes without a restart');
--- error_log
while loading keys of "http://127.0.0.1:
Connection refused
oauth2: loaded

=== TEST 4: discovery naming another issuer is rejected and logged
--- http_config
# the provider reached under another name: its metadata names its own issuer
oauth2_issuer http://127.0.0.1:$TEST_PORT2;
oauth2_audience urn:test:api;
oauth2_on_failure 401;
server {
    listen 127.0.0.1:$TEST_PORT2;
    location / { proxy_pass $TEST_OP; }
}
--- config
location / { oauth2_auth on; empty_gif; }
--- test
sleep 0.5;
is(http_get('/', { Authorization => 'Bearer ' . token() })->{status}, 503, 'no trusted metadata -> 503');
--- error_log
provider metadata names issuer "http://127.0.0.1:
expected "http://127.0.0.1:

=== TEST 5: HTTPS to the provider: trusted via oauth2_ssl_trusted_certificate
--- setup
make_tls();
--- http_config
oauth2_on_failure 401;
oauth2_jwks_uri https://127.0.0.1:$TEST_PORT2/jwks;
oauth2_ssl_trusted_certificate $TEST_ROOT/ca.crt;
oauth2_audience urn:test:api;
server {
    listen 127.0.0.1:$TEST_PORT2 ssl;
    ssl_certificate $TEST_ROOT/tls.crt;
    ssl_certificate_key $TEST_ROOT/tls.key;
    location / { proxy_pass $TEST_OP; }
}
--- config
location / { oauth2_auth on; empty_gif; }
--- test
my $code;
for (1 .. 40) {
    $code = http_get('/', { Authorization => 'Bearer ' . token() })->{status};
    last if $code == 200;
    sleep 0.25;
}
is($code, 200, 'keys fetched over HTTPS with the trusted CA');

=== TEST 6: HTTPS to the provider with an untrusted certificate is refused
--- setup
make_tls();
--- http_config
oauth2_on_failure 401;
oauth2_jwks_uri https://127.0.0.1:$TEST_PORT2/jwks;
oauth2_audience urn:test:api;
server {
    listen 127.0.0.1:$TEST_PORT2 ssl;
    ssl_certificate $TEST_ROOT/tls.crt;
    ssl_certificate_key $TEST_ROOT/tls.key;
    location / { proxy_pass $TEST_OP; }
}
--- config
location / { oauth2_auth on; empty_gif; }
--- test
sleep 1;
is(http_get('/', { Authorization => 'Bearer ' . token() })->{status}, 503, 'untrusted provider: no keys, 503');
--- error_log
JWKS request to "https://127.0.0.1:
certificate
