# An MCP server behind nginx, and an MCP client that starts from nothing but
# its URL, both on the official MCP TypeScript SDK (npm
# @modelcontextprotocol/sdk, t/op/mcp.mjs): the SDK's own OAuth goes 401 →
# RFC 9728 metadata (SPEC §11) → the provider's metadata → a
# client-credentials token for the resource the metadata names → the MCP
# session, through nginx, with the caller's subject passed on.
use strict;
use warnings;
use lib 't/lib';
use OAuth2Test;
use JSON::PP;

op_start();
# the MCP server listens on $TEST_PORT2 in every block
our $mcp = spawn('the MCP server', servroot() . '/mcp.log', fixed_port2(), 10,
                 'node', 't/op/mcp.mjs', 'server', fixed_port2());
END { local $?; stop_process($mcp, 'TERM') if $mcp }
run_tests();

# mcp_client($url, $secret): run the SDK's client; its JSON answer
sub mcp_client {
    my ($url, $secret) = @_;
    my @cmd = ('node', 't/op/mcp.mjs', 'client', $url, op_url(), 'api-client', $secret // 'api-secret');
    open my $out, '-|', @cmd or die "node: $!";
    my $text = do { local $/; <$out> };
    close $out;
    my $d = eval { decode_json($text) } // { error => "no JSON: $text" };
    return $d;
}

__DATA__

=== TEST 1: the SDK's client finds the provider, gets a token, lists and calls the tools
--- http_config
oauth2_issuer $TEST_OP;
--- config
location = /.well-known/oauth-protected-resource { oauth2_resource_metadata; }
location /mcp {
    oauth2_auth on;
    oauth2_on_failure 401;
    # the resource the metadata names, as the SDK asks for it (RFC 8707)
    oauth2_audience http://127.0.0.1:$TEST_PORT;
    proxy_set_header X-Subject $oauth2_sub;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_buffering off;
    proxy_pass http://127.0.0.1:$TEST_PORT2;
}
--- test
my $base = 'http://127.0.0.1:' . nginx_port();
my $d = main::mcp_client("$base/mcp");
ok(!$d->{error}, 'the SDK connected through nginx') or diag($d->{error}, ' ', $d->{token} // '');
is_deeply($d->{tools}, ['whoami'], 'it listed the tools');
is($d->{whoami}, 'api-client', 'the tool saw the subject nginx validated');
my @seen = @{ $d->{seen} // [] };
is($seen[0], '401 /mcp', 'it started with a 401 from nginx') or diag(join(', ', @seen));
ok((grep { $_ eq '200 /.well-known/oauth-protected-resource' } @seen), 'read the metadata the 401 named');
ok((grep { m{^200 /\.well-known/(oauth-authorization-server|openid-configuration)} } @seen),
   "read the provider's metadata");
ok((grep { $_ eq '200 /token' } @seen), 'got a token');
ok((grep { m{^20\d /mcp$} } @seen), 'then the MCP server answered');
# the token nginx accepted is a real one, for this resource
my ($payload) = (split /\./, $d->{token} // '')[1];
$payload =~ tr{-_}{+/};
my $claims = decode_json(MIME::Base64::decode_base64($payload));
is($claims->{aud}, $base, 'a token for the resource the metadata names');
is(http_get('/mcp', {}, 'POST')->{status}, 401, 'without it: 401');

=== TEST 2: a client the provider refuses never reaches the MCP server
--- http_config
oauth2_issuer $TEST_OP;
--- config
location = /.well-known/oauth-protected-resource { oauth2_resource_metadata; }
location /mcp {
    oauth2_auth on;
    oauth2_on_failure 401;
    oauth2_audience http://127.0.0.1:$TEST_PORT;
    proxy_pass http://127.0.0.1:$TEST_PORT2;
}
--- test
my $d = main::mcp_client('http://127.0.0.1:' . nginx_port() . '/mcp', 'a-wrong-secret');
ok($d->{error}, 'the SDK could not connect') or diag(explain($d));
ok(!(grep { m{^20\d /mcp$} } @{ $d->{seen} // [] }), 'no MCP request passed nginx');
