# A real browser (Debian's Chromium, driven by puppeteer-core from
# t/browser/) through the provider's real pages: a protected page, the login,
# the API with the session, sign-out to a public page, and Cancel at the
# provider. Checks what a person sees: where they end up, the page text, the
# cookies the browser kept, and no cookie warnings from the browser.
use strict;
use warnings;
use lib 't/lib';
use OAuth2Test;
use JSON::PP;

my $port = fixed_port();
op_start(redirect_uri => ["http://127.0.0.1:$port/oauth2/callback"]);
write_cookie_keys('cookie.keys', 'c');
run_tests();

__DATA__

=== TEST 1: log in, use the API, sign out, cancel a login: as a person in Chromium sees it
--- setup
my $html = OAuth2Test::servroot() . '/html';
mkdir "$html/app";
open my $f, '>', "$html/app/index.html" or die $!;
print $f "<!DOCTYPE html><html><head><title>App</title></head><body><h1>Welcome to the app</h1></body></html>\n";
close $f;
open $f, '>', "$html/signed-out.html" or die $!;
print $f "<!DOCTYPE html><html><head><title>Signed out</title></head><body><h1>You are signed out</h1></body></html>\n";
close $f;
--- http_config
oauth2_issuer $TEST_OP;
oauth2_client_id nginx;
oauth2_client_secret nginx-secret;
oauth2_cookie_secret_file $TEST_ROOT/cookie.keys;
oauth2_cookie_secure off;
oauth2_post_logout_redirect_uri /signed-out;
--- config
root $TEST_ROOT/html;
location /app/ { oauth2_auth on; }
location /api/ { oauth2_auth on; oauth2_on_failure 401; add_header X-Sub $oauth2_sub always; empty_gif; }
location = /signed-out { default_type text/html; try_files /signed-out.html =404; }
location = /oauth2/callback { oauth2_callback; }
location = /oauth2/sign_out { oauth2_sign_out; }
--- test
my $base = "http://127.0.0.1:" . nginx_port();
my $json = `node t/browser/login.mjs $base 2>&1`;
my $out = eval { JSON::PP->new->decode($json) } or die "the browser script failed: $json\n";
ok(!$out->{error}, 'the browser went through every step') or diag($out->{error});
like($out->{loginPage}, qr{^\Q${\ op_url()}\E/interaction/}, 'a protected page leads to the provider\'s login page');
is($out->{stateCookies}, 1, 'with one state cookie while the login runs');
is($out->{afterLogin}{url}, "$base/app/", 'after the login: back on the page it started from');
like($out->{afterLogin}{text}, qr/Welcome to the app/, 'which shows the app');
my %c = map { $_->{name} => $_ } @{ $out->{afterLogin}{cookies} };
ok($c{oauth2_session}, 'the browser keeps the session cookie');
ok($c{oauth2_session} && $c{oauth2_session}{httpOnly}, 'HttpOnly');
is($c{oauth2_session} && $c{oauth2_session}{sameSite}, 'Lax', 'SameSite=Lax');
is(scalar(grep { /_st_/ } keys %c), 0, 'no state cookie left');
is($out->{api}{status}, 200, 'the API answers the page\'s fetch with the session');
is($out->{api}{sub}, 'alice', 'as alice');
like($out->{logoutPage}, qr{^\Q${\ op_url()}\E/session/end}, 'sign-out asks at the provider');
is($out->{afterSignOut}{url}, "$base/signed-out", 'then lands on the public signed-out page');
like($out->{afterSignOut}{text}, qr/You are signed out/, 'which says so');
is(scalar @{ $out->{afterSignOut}{cookies} }, 0, 'no module cookie left');
is($out->{afterCancel}{status}, 403, 'Cancel at the provider: 403');
like($out->{afterCancel}{url}, qr{^\Q$base\E/oauth2/callback\?error=access_denied}, 'at the callback');
like($out->{afterCancel}{text}, qr/login failed: access_denied/, 'the page says why');
is($out->{afterCancel}{link}, '/app/', 'and links back to the page');
is(scalar @{ $out->{afterCancel}{cookies} }, 0, 'the state cookie is cleared');
is_deeply($out->{cookieIssues}, [], 'no cookie warnings from the browser');
is(scalar(grep { /cookie/i } @{ $out->{console} }), 0, 'no console message about cookies')
    or diag(join "\n", @{ $out->{console} });
