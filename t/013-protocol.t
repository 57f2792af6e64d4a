# Protocol correctness: a cached answer serves only where the same
# validation applies; the token request sends the login's own redirect_uri;
# sessions belong to their issuer and client; the issuer is compared
# character for character; an ID token is not an access token.
use strict;
use warnings;
use lib 't/lib';
use OAuth2Test;

my $port = fixed_port();
op_start(redirect_uri => ["http://127.0.0.1:$port/oauth2/callback", "http://127.0.0.1:$port/oauth2/callback-hs"]);
write_cookie_keys('cookie.keys', 'p');
run_tests();


__DATA__

=== TEST 1: a cached answer never crosses validation modes
--- http_config
oauth2_issuer $TEST_OP;
oauth2_client_id nginx;
oauth2_client_secret nginx-secret;
oauth2_audience urn:test:api urn:test:opaque;
oauth2_on_failure 401;
--- config
location /auto { oauth2_auth on; add_header X-Error $oauth2_error always; empty_gif; }
location /jwt { oauth2_auth on; oauth2_token_validation jwt; add_header X-Error $oauth2_error always; empty_gif; }
location /intro { oauth2_auth on; oauth2_token_validation introspection; add_header X-Error $oauth2_error always; empty_gif; }
--- test
my $opaque = token(resource => 'urn:test:opaque');
is(http_get('/auto', bearer($opaque))->{status}, 200, 'an opaque token, introspected at an auto location');
my $r = http_get('/jwt', bearer($opaque));
is($r->{status}, 401, 'the same token at a jwt location: 401 (the cached introspection does not serve there)');
my $jwt = token();
is(http_get('/auto', bearer($jwt))->{status}, 200, 'a JWT accepted (and cached) at an auto location');
# (this provider refuses to introspect or revoke its JWT access tokens: what
# matters is that the introspection location asks it instead of the cache)
my $before = op_stat('/token/introspection');
$r = http_get('/intro', bearer($jwt));
is(op_stat('/token/introspection') - $before, 1, 'at an introspection location the token is introspected, not taken from the cache');
isnt($r->{status}, 200, 'and the provider decides (here: it cannot introspect JWTs, 503)');
is($r->{headers}{'x-error'}, 'provider_unavailable', 'provider_unavailable');

=== TEST 2: the token request sends the redirect_uri the login sent
--- http_config
oauth2_issuer $TEST_OP;
oauth2_client_id nginx;
oauth2_client_secret nginx-secret;
oauth2_cookie_secret_file $TEST_ROOT/cookie.keys;
oauth2_cookie_secure off;
--- config
location / { oauth2_auth on; oauth2_redirect_uri /oauth2/callback-hs; add_header X-Sub $oauth2_sub always; empty_gif; }
location = /oauth2/callback-hs { oauth2_callback; }
--- test
my $base = "http://127.0.0.1:" . nginx_port();
my $b = browser();
my $r = $b->get("$base/page", { accept => 'text/html' });
like($r->{headers}{location}, qr/redirect_uri=http%3A%2F%2F127\.0\.0\.1%3A\d+%2Foauth2%2Fcallback-hs/, 'the login sends .../callback-hs');
my $back = $b->login_at_provider($r->{headers}{location}, 'alice');
my $cb = $b->get(OAuth2Browser::absolute($base, $back->{headers}{location}));
is($cb->{status}, 302, 'the provider accepts the code (same redirect_uri)') or diag($cb->{content});
is($b->get("$base/page")->{headers}{'x-sub'}, 'alice', 'logged in');
--- no_error_log
token endpoint answered

=== TEST 3: a session made for one client is nothing to another client sharing the cookie key
--- http_config
oauth2_issuer $TEST_OP;
oauth2_cookie_secret_file $TEST_ROOT/cookie.keys;
oauth2_cookie_secure off;
--- config
location /a/ { oauth2_auth on; oauth2_client_id nginx; oauth2_client_secret nginx-secret; add_header X-Sub $oauth2_sub always; empty_gif; }
location /b/ { oauth2_auth on; oauth2_client_id nginx-b; oauth2_client_secret nginx-b-secret; oauth2_on_failure 401; empty_gif; }
location = /oauth2/callback { oauth2_callback; oauth2_client_id nginx; oauth2_client_secret nginx-secret; }
--- test
my $base = "http://127.0.0.1:" . nginx_port();
my $b = browser();
is($b->login("$base/a/")->{status}, 302, 'logged in at client nginx');
is($b->get("$base/a/x")->{headers}{'x-sub'}, 'alice', 'the session works for its client');
my $r = $b->get("$base/b/x");
is($r->{status}, 401, 'the same cookie at client nginx-b: no session');
--- error_log
session cookie rejected

=== TEST 4: the issuer is compared character for character (metadata)
--- setup
$main::tok = token();
--- http_config
oauth2_issuer $TEST_OP/;
oauth2_audience urn:test:api;
oauth2_on_failure 401;
--- config
location / { oauth2_auth on; empty_gif; }
--- test
my $r = http_get('/', bearer($main::tok));
is($r->{status}, 503, 'configured "issuer/", the provider says "issuer": no metadata, 503');
--- error_log
issuer

=== TEST 5: the issuer is compared character for character (tokens)
--- http_config
oauth2_issuer $TEST_OP;
oauth2_audience urn:test:api;
oauth2_on_failure 401;
--- config
location / { oauth2_auth on; add_header X-Error $oauth2_error always; empty_gif; }
--- test
is(http_get('/', bearer(mint()))->{status}, 200, 'a token of the issuer');
my $r = http_get('/', bearer(mint('{"claims":{"iss":"' . op_url() . '/"}}')));
is($r->{status}, 401, 'iss with a trailing "/": another issuer');
is($r->{headers}{'x-error'}, 'wrong_issuer', 'wrong_issuer');

=== TEST 6: an ID token is not an access token
--- http_config
oauth2_issuer $TEST_OP;
oauth2_audience urn:test:api;
oauth2_on_failure 401;
--- config
location / { oauth2_auth on; add_header X-Error $oauth2_error always; empty_gif; }
--- test
my $r = http_get('/', bearer(mint('{"claims":{"nonce":"n-0S6_WzA2Mj"},"header":{"typ":"JWT"}}')));
is($r->{status}, 401, 'a JWT with nonce: 401');
like($r->{headers}{'www-authenticate'} // '', qr/error="invalid_token", error_description="an ID token is not an access token"/, 'invalid_token, and why');
is($r->{headers}{'x-error'}, 'id_token', '$oauth2_error id_token');
