# Certificate-bound access tokens (RFC 8705 §3, SPEC §11): the provider
# binds a client-credentials token to the client's certificate (cnf
# x5t#S256); nginx accepts it only on a TLS connection presenting that
# certificate. Certificates made by openssl in the harness.
use strict;
use warnings;
use lib 't/lib';
use OAuth2Test;

op_start();
make_tls();
our ($c1, $k1) = make_client_cert('client1');
our ($c2, $k2) = make_client_cert('client2');
run_tests();

sub der_b64 {
    my ($file) = @_;
    open my $f, '<', $file or die $!;
    my $pem = do { local $/; <$f> };
    $pem =~ s/-----[^-]+-----//g;
    $pem =~ s/\s+//g;
    return $pem;
}

sub over_tls {
    my ($token, $cert, $key) = @_;
    my %ssl = (SSL_verify_mode => 0);
    @ssl{qw(SSL_cert_file SSL_key_file)} = ($cert, $key) if $cert;
    my $h = HTTP::Tiny->new(verify_SSL => 0, SSL_options => \%ssl, keep_alive => 0);
    return $h->get('https://127.0.0.1:' . nginx_port2() . '/api', { headers => bearer($token) });
}

__DATA__

=== TEST 1: the right certificate, another one, none, no TLS
--- http_config
oauth2_issuer $TEST_OP;
oauth2_audience urn:test:api;
server {
    listen 127.0.0.1:$TEST_PORT2 ssl;
    ssl_certificate $TEST_ROOT/tls.crt;
    ssl_certificate_key $TEST_ROOT/tls.key;
    ssl_verify_client optional_no_ca;
    location /api { oauth2_auth on; oauth2_on_failure 401; empty_gif; }
}
--- config
location /api { oauth2_auth on; oauth2_on_failure 401; empty_gif; }
--- test
my $t = token(client => 'api-mtls', secret => 'api-mtls-secret', resource => 'urn:test:api',
              headers => { 'x-client-cert' => main::der_b64($main::c1) });
my $r = main::over_tls($t, $main::c1, $main::k1);
is($r->{status}, 200, 'with its certificate: 200') or diag($r->{content});
is(main::over_tls($t, $main::c1, $main::k1)->{status}, 200, 'again (cached): 200');
my $o = main::over_tls($t, $main::c2, $main::k2);
is($o->{status}, 401, 'another certificate: 401');
like($o->{headers}{'www-authenticate'}, qr/error="invalid_token"/, 'invalid_token');
is(main::over_tls($t)->{status}, 401, 'no certificate: 401');
is(http_get('/api', bearer($t))->{status}, 401, 'no TLS at all: 401');
# an unbound token needs no certificate
is(main::over_tls(token(resource => 'urn:test:api'))->{status}, 200, 'an unbound token: 200');
--- error_log
the token is bound to a client certificate this connection does not present
