# The hostile input catalogue: each case asserts its exact status, and the
# worker that served them is still the same process afterwards.
use strict;
use warnings;
use lib 't/lib';
use OAuth2Test;

my $port = fixed_port();
op_start(redirect_uri => ["http://127.0.0.1:$port/oauth2/callback"]);
write_cookie_keys('cookie.keys', 'h');
write_cookie_keys('other.keys', 'o');
run_tests();

sub b64u { MIME::Base64::encode_base64url($_[0]) }

# a raw request; returns the status
sub raw_status {
    my ($head) = @_;
    my ($status) = raw_http($head);
    return $status;
}

__DATA__

=== TEST 1: JWT and Authorization header tricks (bearer API)
--- http_config
oauth2_issuer $TEST_OP;
oauth2_audience urn:test:api;
oauth2_on_failure 401;
large_client_header_buffers 4 32k;
--- config
location / { oauth2_auth on; add_header X-Sub $oauth2_sub always; empty_gif; }
--- test
my @workers = worker_pids();
my $good = token();
my ($h, $p, $s) = split /\./, $good;
my $kid = (MIME::Base64::decode_base64url($h) =~ /"kid":"([^"]+)"/)[0];
my $now = time;
my @cases = (
    # [name, token or undef, expected status, extra headers]
    ['valid token', $good, 200],
    ['alg none', mint('{"key":"none"}'), 401],
    ['alg None', mint('{"key":"none","header":{"alg":"None"}}'), 401],
    ['alg nOnE', mint('{"key":"none","header":{"alg":"nOnE"}}'), 401],
    ['alg none with a signature', mint('{"key":"none"}') . 'c2ln', 401],
    ['HS256 keyed with the public key', mint('{"key":"hs256-public"}'), 401],
    ['kid path traversal', mint('{"header":{"kid":"../../../../etc/passwd"}}'), 401],
    ['kid SQL', mint(qq({"header":{"kid":"' OR 1=1 --"}})), 401],
    ['kid CRLF', mint('{"header":{"kid":"a\r\nX-Injected: 1"}}'), 401],
    ['kid not a string', mint('{"header":{"kid":7}}'), 401],
    ['jku to a foreign key set', mint('{"key":"foreign","header":{"jku":"http://127.0.0.1:1/jwks","kid":"x"}}'), 401],
    ['x5u header', mint('{"key":"foreign","header":{"x5u":"http://127.0.0.1:1/c.pem"}}'), 401],
    ['embedded jwk', mint('{"key":"foreign","header":{"jwk":{"kty":"RSA","n":"AQAB","e":"AQAB"},"kid":null}}'), 401],
    ['crit header', mint('{"header":{"crit":["b64"],"b64":false}}'), 401],
    ['typ JWE', mint('{"header":{"typ":"JWE"}}'), 401],
    ['duplicate sub in the payload', undef, 401, 'dup'],
    ['payload is an array', undef, 401, 'array'],
    ['exp as a string', mint('{"claims":{"exp":"' . ($now + 600) . '"}}'), 401],
    ['exp missing', mint('{"claims":{"exp":null}}'), 401],
    ['huge exp (signed by the provider)', mint('{"claims":{"exp":1e300}}'), 200],
    ['negative nbf', mint('{"claims":{"nbf":-1000}}'), 401],
    ['iat far in the future', mint('{"claims":{"iat":' . ($now + 86400) . '}}'), 401],
    ['nested token as payload', undef, 401, 'nested'],
    ['JWE (five parts)', "$h.$p.$s.aaaa.bbbb", 401],
    ['empty alg', mint('{"header":{"alg":""}}'), 401],
    ['alg as a number', mint('{"header":{"alg":256}}'), 401],
    ['header not JSON', b64u('not json') . ".$p.$s", 401],
    ['padded signature', "$h.$p.$s==", 401],
    ['empty payload', "$h..$s", 401],
    ['20 KB token', ('A' x 20000) . ".$p.$s", 401],
);
my %raw = (
    dup => do {
        my $claims = '{"iss":"' . op_url() . '","aud":"urn:test:api","exp":' . ($now + 600) . ',"sub":"alice","sub":"admin"}';
        mint('{"raw_claims":"' . b64u($claims) . '"}');
    },
    array => mint('{"raw_claims":"' . b64u('[1,2,3]') . '"}'),
    nested => mint('{"raw_claims":"' . b64u(qq("$good")) . '","header":{"cty":"JWT"}}'),
);
for my $c (@cases) {
    my $t = $c->[1] // $raw{ $c->[3] };
    my $r = http_get('/', { Authorization => "Bearer $t" });
    is($r->{status}, $c->[2], "$c->[0]: $c->[2]");
    ok(!defined $r->{headers}{'x-injected'}, "$c->[0]: nothing injected");
}
# header tricks
is(main::raw_status("GET / HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer $good\r\nAuthorization: Bearer $good\r\nConnection: close\r\n\r\n"), 400, 'two Authorization headers: 400 (nginx)');
is(http_get('/', { Authorization => "bearer $good" })->{status}, 200, 'lower-case bearer');
is(http_get('/', { Authorization => "Bearer     $good   " })->{status}, 200, 'extra spaces');
is(main::raw_status("GET / HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer\t$good\r\nConnection: close\r\n\r\n"), 200, 'a tab after Bearer');
is(http_get('/', { Authorization => 'Basic ' . MIME::Base64::encode_base64('u:p', '') })->{status}, 401, 'Basic credentials: 401');
is(http_get('/', { Authorization => "Bearer " . ('x' x 65536) })->{status}, 400, '64 KB header: 400 (nginx)');
is(main::raw_status("GET / HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t\xc3\xa9st\r\nConnection: close\r\n\r\n"), 401, 'non-token characters: 401');
is(http_get('/', { Authorization => '   ' })->{status}, 401, 'blank Authorization: 401');
is(http_get('/', { Authorization => 'Bearer ' . $good . ' extra' })->{status}, 401, 'two tokens: 401');
is_deeply([worker_pids()], \@workers, 'the same worker served every case');

=== TEST 2: cookie tricks
--- http_config
oauth2_issuer $TEST_OP;
oauth2_client_id nginx;
oauth2_client_secret nginx-secret;
oauth2_cookie_secret_file $TEST_ROOT/cookie.keys;
oauth2_cookie_secure off;
oauth2_on_failure 401;
oauth2_scope openid profile;
large_client_header_buffers 4 32k;
--- config
location / { oauth2_auth on; empty_gif; }
location /app { oauth2_auth on; oauth2_on_failure redirect; empty_gif; }
location = /oauth2/callback { oauth2_callback; }
--- test
my @workers = worker_pids();
my $base = "http://127.0.0.1:" . nginx_port();
my $b = browser();
$b->login("$base/app", 'big-hostile');   # a chunked session
my %jar = map { $_ => $b->cookie($_) } grep { /^oauth2_session/ } $b->cookie_names;
ok(keys(%jar) >= 2, 'a chunked session to play with');
is($b->get("$base/x")->{status}, 200, 'it works as it is');
my $with = sub {
    my (%c) = @_;
    my $e = browser();
    $e->set_cookie($_, $c{$_}) for keys %c;
    return $e->get("$base/x")->{status};
};
my %t = %jar; $t{oauth2_session_1} = substr($t{oauth2_session_1}, 0, 100);
is($with->(%t), 401, 'truncated chunk: 401');
%t = %jar; delete $t{oauth2_session_1};
is($with->(%t), 401, 'missing chunk: 401');
%t = %jar; $t{oauth2_session} =~ s/^\d+\./999999999./;
is($with->(%t), 401, 'chunk count bomb: 401');
%t = %jar; $t{oauth2_session} =~ s/^\d+\./1./;
is($with->(%t), 401, 'chunk count 1 with a chunked body: 401');
%t = %jar; $t{oauth2_session_1} = $jar{oauth2_session_2} // 'x'; $t{oauth2_session_2} = $jar{oauth2_session_1};
is($with->(%t), 401, 'chunks swapped: 401');
# a state cookie's value replayed as a session
my $s = browser();
$s->get("$base/app", { accept => 'text/html' });
my ($st) = grep { /_st_/ } $s->cookie_names;
is($with->(oauth2_session => $s->cookie($st)), 401, 'a state cookie used as the session: 401');
is($with->(oauth2_session => 'v1.' . ('A' x 30000)), 401, 'a huge cookie: 401');
is(main::raw_status("GET /x HTTP/1.1\r\nHost: x\r\nCookie: oauth2_session=v1.\x01\x7f\r\nConnection: close\r\n\r\n"), 401, 'control characters: 401');
$main::saved_session = \%jar;
is_deeply([worker_pids()], \@workers, 'the same worker served every case');

=== TEST 3: a session sealed with another server's key
--- http_config
oauth2_issuer $TEST_OP;
oauth2_client_id nginx;
oauth2_client_secret nginx-secret;
oauth2_cookie_secret_file $TEST_ROOT/other.keys;
oauth2_cookie_secure off;
oauth2_on_failure 401;
large_client_header_buffers 4 32k;
--- config
location / { oauth2_auth on; empty_gif; }
--- test
my $e = browser();
$e->set_cookie($_, $main::saved_session->{$_}) for keys %{ $main::saved_session };
is($e->get("http://127.0.0.1:" . nginx_port() . "/x")->{status}, 401, "another server's cookie: 401");

=== TEST 4: callback and redirect tricks
--- http_config
oauth2_issuer $TEST_OP;
oauth2_client_id nginx;
oauth2_client_secret nginx-secret;
oauth2_cookie_secret_file $TEST_ROOT/cookie.keys;
oauth2_cookie_secure off;
--- config
location / { oauth2_auth on; empty_gif; }
location = /oauth2/callback { oauth2_callback; }
location = /logout { oauth2_sign_out; }
--- test
my @workers = worker_pids();
my $base = "http://127.0.0.1:" . nginx_port();
my $b = browser();
my $r = $b->get("$base/start", { accept => 'text/html' });
my ($state) = $r->{headers}{location} =~ /state=([^&]+)/;
is($b->get("$base/oauth2/callback?state=$state")->{status}, 400, 'missing code: 400');
is($b->get("$base/oauth2/callback?code=x&state=$state&state=$state")->{status}, 400, 'two state parameters: 400');
is($b->get("$base/oauth2/callback?code=x")->{status}, 400, 'missing state: 400');
my $x = $b->get("$base/oauth2/callback?error=access_denied&error_description=%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E&state=$state");
is($x->{status}, 403, 'IdP error: 403');
unlike($x->{content}, qr/<img/i, 'error_description reflected nowhere');
my $y = $b->get("$base/oauth2/callback?error=%22%3E%3Cscript%3Ealert(1)%3C%2Fscript%3E");
unlike($y->{content}, qr/<script>/i, 'HTML in the error code is escaped');
# the stored return URL: a login started from a path that looks like another origin
for my $path ('//evil.example/x', '/%2F%2Fevil.example', '/%5Cevil.example', '/ok%0D%0ASet-Cookie:%20x=1') {
    my $c = browser();
    my $cb = $c->login("$base$path");
    my $loc = $cb->{headers}{location} // '';
    like($loc, qr{^(http://127\.0\.0\.1:\d+)?/}, "login from $path returns to this origin");
    unlike($loc, qr{^(https?:)?//evil|\\\\|[\r\n]}, "login from $path: not to another origin");
}
for my $rd ('//evil.example', '/\\evil.example', 'https://evil.example', '%2F%2Fevil.example', "/a%0d%0aSet-Cookie:%20x=1") {
    my $o = browser()->get("$base/logout?rd=$rd");
    unlike($o->{headers}{location} // '', qr/evil|Set-Cookie/, "rd=$rd is not followed");
}
is_deeply([worker_pids()], \@workers, 'the same worker served every case');

=== TEST 5: a panic inside the module is a 500 and an [alert], not a dead worker
--- http_config
oauth2_issuer $TEST_OP;
oauth2_audience urn:test:api;
oauth2_on_failure 401;
--- config
location / { oauth2_auth on; empty_gif; }
--- test
my @workers = worker_pids();
my $r = http_get('/', { 'X-Oauth2-Test-Panic' => '1' });
is($r->{status}, 500, 'the forced panic gives 500');
is(http_get('/', { Authorization => 'Bearer ' . token() })->{status}, 200, 'the worker keeps serving');
is_deeply([worker_pids()], \@workers, 'same worker process');
--- error_log
oauth2: internal error (panic caught)
--- allow_alert
