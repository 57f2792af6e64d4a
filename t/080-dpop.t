# DPoP (RFC 9449, SPEC §11) with real DPoP-bound tokens from the provider
# (its dPoP feature: cnf.jkt in the JWT), proofs made as a client makes
# them (t/op/op.mjs dpopProof), and the hostile catalogue of proofs, each
# with its status and challenge.
use strict;
use warnings;
use lib 't/lib';
use OAuth2Test;

op_start();
run_tests();

# a DPoP-bound token for key $k (the provider checks the proof at its token endpoint)
sub bound_token {
    my ($k) = @_;
    my $p = dpop_proof(key => $k // 'a', htm => 'POST', htu => op_url() . '/token');
    return token(resource => 'urn:test:api', headers => { dpop => $p });
}

sub url { 'http://127.0.0.1:' . nginx_port() . $_[0] }

sub call {
    my ($path, $token, @proofs) = @_;
    my $h = { authorization => "DPoP $token" };
    $h->{dpop} = @proofs == 1 ? $proofs[0] : \@proofs if @proofs;
    return HTTP::Tiny->new(keep_alive => 0)->get(url($path), { headers => $h });
}

__DATA__

=== TEST 1: nginx -t: an unknown mode
--- http_config
oauth2_issuer $TEST_OP;
oauth2_audience urn:test:api;
--- config
location / { oauth2_auth on; oauth2_dpop sometimes; }
--- must_die
--- error_log
invalid value "sometimes", it must be "off", "optional" or "required"

=== TEST 2: a DPoP-bound token with fresh proofs; as Bearer it is refused; challenges name DPoP
--- http_config
oauth2_issuer $TEST_OP;
oauth2_audience urn:test:api;
--- config
location /api { oauth2_auth on; oauth2_on_failure 401; oauth2_dpop optional; empty_gif; }
--- test
my $t = main::bound_token('a');
my $u = main::url('/api');
for my $n (1 .. 3) {
    my $p = dpop_proof(key => 'a', htu => $u, token => $t);
    is(main::call('/api', $t, $p)->{status}, 200, "a fresh proof: 200 ($n)");
}
my $b = http_get('/api', bearer($t));
is($b->{status}, 401, 'the same token as Bearer: 401');
like($b->{headers}{'www-authenticate'}, qr/^Bearer realm="[^"]*", error="invalid_token"/, 'invalid_token');
like($b->{headers}{'www-authenticate'}, qr/DPoP algs="[^"]*ES256/, 'and the DPoP scheme offered');
my $none = http_get('/api');
like($none->{headers}{'www-authenticate'}, qr/^Bearer realm="localhost", DPoP algs="/, 'no token: both schemes');
# a plain bearer token still works where DPoP is optional
is(http_get('/api', bearer(token(resource => 'urn:test:api')))->{status}, 200, 'a plain bearer token: 200');
# and an unbound token with the DPoP scheme is refused
my $plain = token(resource => 'urn:test:api');
my $pp = dpop_proof(key => 'a', htu => $u, token => $plain);
my $x = main::call('/api', $plain, $pp);
is($x->{status}, 401, 'an unbound token as DPoP: 401');
like($x->{headers}{'www-authenticate'}, qr/^DPoP algs="[^"]+", error="invalid_token"/, 'invalid_token in the DPoP scheme');
--- error_log
a DPoP-bound token is sent with the DPoP scheme

=== TEST 3: the hostile catalogue of proofs
--- http_config
oauth2_issuer $TEST_OP;
oauth2_audience urn:test:api;
large_client_header_buffers 4 32k;
--- config
location /api { oauth2_auth on; oauth2_on_failure 401; oauth2_dpop required; empty_gif; }
--- test
my $t = main::bound_token('a');
my $u = main::url('/api');
my $now = time;
my $case = sub {
    my ($what, $want, %b) = @_;
    my $desc = delete $b{desc};
    my @proofs = ref $b{proofs} ? @{ delete $b{proofs} } : (dpop_proof(key => 'a', htu => $u, token => $t, %b));
    my $r = main::call('/api?q=1', $t, @proofs);
    is($r->{status}, $want, "$what: $want");
    if ($want == 401) {
        like($r->{headers}{'www-authenticate'} // '',
            qr/^DPoP algs="[^"]+", error="invalid_dpop_proof", error_description="[^"]*\Q$desc\E/,
            "$what: the DPoP challenge names $desc");
    }
    return $r;
};
$case->('a good proof (the request has a query, the proof none)', 200);
$case->('query in htu (ignored on both sides, RFC 9449 §4.3)', 200, htu => "$u?other=2#f");
$case->('wrong htm', 401, desc => 'htm', htm => 'POST');
$case->('wrong htu', 401, desc => 'htu', htu => main::url('/other'));
$case->('another scheme in htu', 401, desc => 'htu', htu => 'https://127.0.0.1:' . nginx_port() . '/api');
$case->('iat too old', 401, desc => 'iat', iat => $now - 3600);
$case->('iat in the future', 401, desc => 'iat', iat => $now + 3600);
$case->('private key members in jwk', 401, desc => 'jwk', jwk => 'private');
$case->('alg none', 401, desc => 'alg', sign => 'none');
$case->('alg HS256', 401, desc => 'alg', sign => 'hs256', jwk => 'symmetric');
$case->('a symmetric jwk', 401, desc => 'jwk', jwk => 'symmetric');
$case->('ath of another token', 401, desc => 'ath', token => 'another-token');
$case->('no ath', 401, desc => 'ath', token => undef, claims => { ath => undef });
$case->('cnf.jkt of another key (the proof is key b\'s own)', 401, desc => 'bound to', key => 'b');
$case->('signed by a key other than its jwk', 401, desc => 'signature', sign => 'b');
$case->('no typ', 401, desc => 'typ', header => { typ => undef });
$case->('no jti', 401, desc => 'jti', claims => { jti => undef });
my $two = [dpop_proof(key => 'a', htu => $u, token => $t), dpop_proof(key => 'a', htu => $u, token => $t)];
$case->('two DPoP headers', 401, desc => 'one DPoP proof', proofs => $two);
$case->('oversized proof', 401, desc => 'too large', claims => { pad => 'x' x 9000 });
my $once = dpop_proof(key => 'a', htu => $u, token => $t, jti => "once-$now");
is(main::call('/api', $t, $once)->{status}, 200, 'a proof once: 200');
my $again = main::call('/api', $t, $once);
is($again->{status}, 401, 'the same proof again: 401');
like($again->{headers}{'www-authenticate'}, qr/was used before/, 'replay named');
# required: Bearer is refused, and the challenge is DPoP only
my $plain = http_get('/api', bearer(token(resource => 'urn:test:api')));
is($plain->{status}, 401, 'a plain bearer token where DPoP is required: 401');
like($plain->{headers}{'www-authenticate'}, qr/^DPoP algs="[^"]+", /, 'the DPoP challenge only');
--- error_log
oauth2: DPoP proof rejected: the DPoP proof was used before
oauth2: DPoP proof rejected: one DPoP proof is expected

=== TEST 4: a replayed proof is refused by the other worker too
--- workers
2
--- http_config
oauth2_issuer $TEST_OP;
oauth2_audience urn:test:api;
--- config
listen 127.0.0.1:$TEST_PORT2 reuseport;
location /api { oauth2_auth on; oauth2_on_failure 401; oauth2_dpop optional; add_header X-Pid $pid always; empty_gif; }
--- test
my $t = main::bound_token('a');
my $u = 'http://127.0.0.1:' . nginx_port2() . '/api';
my ($cross, $bad) = (0, 0);
for my $n (1 .. 30) {
    my $p = dpop_proof(key => 'a', htu => $u, token => $t);
    my $get = sub { HTTP::Tiny->new(keep_alive => 0)->get($u, { headers => { authorization => "DPoP $t", dpop => $p } }) };
    my ($first, $second) = ($get->(), $get->());
    $bad++ unless $first->{status} == 200 && $second->{status} == 401;
    $cross++ if $first->{headers}{'x-pid'} ne $second->{headers}{'x-pid'};
}
is($bad, 0, 'every proof accepted once, refused the second time');
ok($cross > 0, "$cross replays were refused by the other worker");

=== TEST 5: an introspected (opaque) DPoP-bound token: its cnf from the introspection answer
--- http_config
oauth2_issuer $TEST_OP;
oauth2_client_id nginx;
oauth2_client_secret nginx-secret;
oauth2_audience urn:test:opaque;
oauth2_token_validation introspection;
--- config
location /api { oauth2_auth on; oauth2_on_failure 401; oauth2_dpop optional; empty_gif; }
--- test
my $p = dpop_proof(key => 'a', htm => 'POST', htu => op_url() . '/token');
my $t = token(resource => 'urn:test:opaque', headers => { dpop => $p });
unlike($t, qr/^ey/, 'an opaque token');
my $u = main::url('/api');
is(http_get('/api', bearer($t))->{status}, 401, 'as Bearer: 401');
is(main::call('/api', $t, dpop_proof(key => 'a', htu => $u, token => $t))->{status}, 200, 'with its proof: 200');
is(main::call('/api', $t, dpop_proof(key => 'b', htu => $u, token => $t))->{status}, 401, "another key's proof: 401");
