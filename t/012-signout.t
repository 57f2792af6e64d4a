# Sign-out with a provider that has no end_session_endpoint: `rd` is
# honoured only as a same-origin path.
use strict;
use warnings;
use lib 't/lib';
use OAuth2Test;

my $port = fixed_port();
op_start(redirect_uri => ["http://127.0.0.1:$port/oauth2/callback"], no_logout => 1);
write_cookie_keys('cookie.keys', 's');
run_tests();

__DATA__

=== TEST 1: rd: same-origin paths only; everything else goes to /
--- http_config
oauth2_issuer $TEST_OP;
oauth2_client_id nginx;
oauth2_client_secret nginx-secret;
oauth2_cookie_secret_file $TEST_ROOT/cookie.keys;
oauth2_cookie_secure off;
--- config
location / { oauth2_auth on; oauth2_on_failure 401; empty_gif; }
location /app { oauth2_auth on; oauth2_on_failure redirect; empty_gif; }
location = /oauth2/callback { oauth2_callback; }
location = /logout { oauth2_sign_out; }
--- test
my $base = "http://127.0.0.1:" . nginx_port();
my $b = browser();
is($b->login("$base/app")->{status}, 302, 'logged in');
is($b->get("$base/x")->{status}, 200, 'session works');
my $r = $b->get("$base/logout?rd=/goodbye%3Fa%3D1");
is($r->{status}, 302, 'signed out');
like($r->{headers}{location}, qr{^(http://127\.0\.0\.1:\d+)?/goodbye\?a=1$}, 'same-origin rd honoured');
is($b->get("$base/x")->{status}, 401, 'the session is gone');
ok(!defined $b->cookie('oauth2_session'), 'cookie cleared');
my @evil = ('//evil.example', '/\\evil.example', 'https://evil.example/', '%2F%2Fevil.example',
            '/%2F%2Fevil.example', '/%5Cevil.example', "/ok%0D%0ASet-Cookie:%20x=1", 'javascript:alert(1)',
            '%2Fok%0AX', 'evil.example');
for my $rd (@evil) {
    my $e = http_get("/logout?rd=$rd");
    is($e->{status}, 302, "rd=$rd: 302");
    like($e->{headers}{location}, qr{^(http://127\.0\.0\.1:\d+)?/$}, "rd=$rd: goes to /");
}
is(http_get('/logout')->{headers}{location} =~ m{/$} ? 1 : 0, 1, 'no rd: /');
--- no_error_log
[error]
