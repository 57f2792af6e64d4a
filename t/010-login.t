# The browser login against the real provider: redirect, login through its
# devInteractions with plain HTTP posts, callback, session cookie.
use strict;
use warnings;
use lib 't/lib';
use OAuth2Test;

my $port = fixed_port();
op_start(redirect_uri => ["http://127.0.0.1:$port/oauth2/callback"]);
open my $f, '>', servroot() . '/cookie.keys' or die;
print $f "# cookie keys\n", MIME::Base64::encode_base64('k' x 32, ''), "\n";
close $f;
run_tests();

__DATA__

=== TEST 1: full login ends at the original URL with 200 and the right identity
--- http_config
oauth2_issuer $TEST_OP;
oauth2_client_id nginx;
oauth2_client_secret nginx-secret;
oauth2_cookie_secret_file $TEST_ROOT/cookie.keys;
oauth2_cookie_secure off;
oauth2_scope openid email;
--- config
location / {
    oauth2_auth on;
    add_header X-Sub $oauth2_sub always;
    add_header X-Email $oauth2_email always;
    add_header X-Method $oauth2_auth_method always;
    add_header X-Cookie-Upstream "[$http_cookie]" always;
    empty_gif;
}
location = /oauth2/callback { oauth2_callback; }
--- test
my $b = browser();
my $base = "http://127.0.0.1:" . nginx_port();
my $r = $b->get("$base/app/page?x=1&y=2", { accept => 'text/html' });
is($r->{status}, 302, 'a browser navigation is redirected');
my $loc = $r->{headers}{location};
like($loc, qr{^\Q${\ op_url()}\E/auth\?}, 'to the authorization endpoint');
for my $p (qw(response_type=code client_id=nginx state= nonce= code_challenge= code_challenge_method=S256 scope=openid\+email)) {
    like($loc, qr/[?&]$p/, "authorization request has $p");
}
like($loc, qr/redirect_uri=http%3A%2F%2F127\.0\.0\.1%3A\d+%2Foauth2%2Fcallback/, 'absolute redirect_uri');
my @st = grep { /^oauth2_session_st_/ } $b->cookie_names;
is(scalar @st, 1, 'one state cookie');
my $attrs = $b->cookie_attrs($st[0]);
ok($attrs->{httponly}, 'state cookie is HttpOnly');
is($attrs->{samesite}, 'Lax', 'state cookie is SameSite=Lax');
my $back = $b->login_at_provider($loc, 'alice');
like($back->{headers}{location}, qr{/oauth2/callback\?code=.*state=}, 'the provider sends the code back');
my $cb = $b->get(OAuth2Browser::absolute($base, $back->{headers}{location}), { accept => 'text/html' });
is($cb->{status}, 302, 'callback redirects');
like($cb->{headers}{location}, qr{^(http://127\.0\.0\.1:\d+)?/app/page\?x=1&y=2$}, 'to the original URL');
ok(defined $b->cookie('oauth2_session'), 'session cookie set');
ok(!(grep { /^oauth2_session_st_/ } $b->cookie_names), 'state cookie cleared');
my $sa = $b->cookie_attrs('oauth2_session');
ok($sa->{httponly}, 'session cookie HttpOnly');
ok(!$sa->{secure}, 'no Secure with oauth2_cookie_secure off');
is($sa->{samesite}, 'Lax', 'SameSite=Lax by default');
$b->set_cookie('other', 'kept');
$r = $b->get("$base/app/page?x=1&y=2", { accept => 'text/html' });
is($r->{status}, 200, 'the original URL now answers 200');
is($r->{headers}{'x-sub'}, 'alice', 'identity: sub');
is($r->{headers}{'x-email'}, 'alice@example.test', 'identity: email');
is($r->{headers}{'x-method'}, 'cookie', 'auth method cookie');
unlike($r->{headers}{'x-cookie-upstream'}, qr/oauth2_session/, 'module cookies are not sent upstream');
like($r->{headers}{'x-cookie-upstream'}, qr/other=kept/, 'other cookies are');
$r = $b->get("$base/api", { accept => 'application/json' });
is($r->{status}, 200, 'the session works for XHR too');
