# RFC 9728 protected-resource metadata (SPEC §11): the document, and
# `resource_metadata="…"` in every 401 of its server block, so that a client
# starting from nothing (as an MCP client does) goes 401 → metadata →
# provider discovery → token → 200.
use strict;
use warnings;
use lib 't/lib';
use OAuth2Test;
use JSON::PP;

op_start();
run_tests();

__DATA__

=== TEST 1: the document, never behind oauth2_auth
--- http_config
oauth2_issuer $TEST_OP;
oauth2_audience urn:test:api;
--- config
oauth2_auth on;
oauth2_on_failure 401;
oauth2_require_scope api:read;
location = /.well-known/oauth-protected-resource { oauth2_resource_metadata; }
location /api { empty_gif; }
--- test
my $r = http_get('/.well-known/oauth-protected-resource');
is($r->{status}, 200, 'served without a token');
like($r->{headers}{'content-type'}, qr{^application/json}, 'JSON');
my $d = decode_json($r->{content});
is($d->{resource}, 'http://127.0.0.1:' . nginx_port(), 'resource: the origin');
is_deeply($d->{authorization_servers}, [op_url()], 'the provider');
is_deeply($d->{scopes_supported}, ['api:read'], 'the scopes the server requires');
is_deeply($d->{bearer_methods_supported}, ['header'], 'header tokens');
is(http_get('/.well-known/oauth-protected-resource', {}, 'POST')->{status}, 405, 'GET only');

=== TEST 2: every 401 of the server names the document; a client goes from nothing to 200
--- http_config
oauth2_issuer $TEST_OP;
oauth2_audience urn:test:api;
--- config
location = /.well-known/oauth-protected-resource { oauth2_resource_metadata; }
location /api { oauth2_auth on; oauth2_on_failure 401; empty_gif; }
--- test
my $base = 'http://127.0.0.1:' . nginx_port();
my $r = http_get('/api');
is($r->{status}, 401, 'no token: 401');
my ($url) = $r->{headers}{'www-authenticate'} =~ /resource_metadata="([^"]+)"/;
is($url, "$base/.well-known/oauth-protected-resource", 'resource_metadata in the challenge');
my $bad = http_get('/api', bearer('garbage.token.x'));
like($bad->{headers}{'www-authenticate'}, qr/error="invalid_token".*resource_metadata=/, 'also with an error');
# the client's way: metadata, the provider's discovery, a token, the API
my $http = HTTP::Tiny->new;
my $meta = decode_json($http->get($url)->{content});
my $as = $meta->{authorization_servers}[0];
my $disc = decode_json($http->get("$as/.well-known/openid-configuration")->{content});
ok($disc->{token_endpoint}, 'the provider names its token endpoint');
my $tok = $http->post_form($disc->{token_endpoint},
    { grant_type => 'client_credentials', scope => 'api:read', resource => 'urn:test:api' },
    { headers => { authorization => 'Basic ' . MIME::Base64::encode_base64('api-client:api-secret', '') } });
is($tok->{status}, 200, 'a token from the provider');
my $at = decode_json($tok->{content})->{access_token};
is(http_get('/api', bearer($at))->{status}, 200, 'the API answers');

=== TEST 3: another server without the document: no parameter
--- http_config
oauth2_issuer $TEST_OP;
oauth2_audience urn:test:api;
server {
    listen 127.0.0.1:$TEST_PORT2;
    location = /.well-known/oauth-protected-resource { oauth2_resource_metadata; }
}
--- config
location /api { oauth2_auth on; oauth2_on_failure 401; empty_gif; }
--- request
GET /api
--- error_code: 401
--- response_headers
WWW-Authenticate: ~^Bearer realm="localhost"$

=== TEST 4: nginx -t: a regex location cannot name the document
--- config
location ~ ^/meta$ { oauth2_resource_metadata; }
--- must_die
--- error_log
"oauth2_resource_metadata" needs a location with a path
