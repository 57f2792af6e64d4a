# The browser login against the real provider: redirect, login through its
# devInteractions with plain HTTP posts, callback, session cookie.
use strict;
use warnings;
use lib 't/lib';
use OAuth2Test;

my $port = fixed_port();
op_start(redirect_uri => ["http://127.0.0.1:$port/oauth2/callback"]);
write_cookie_keys('cookie.keys', 'k');
write_cookie_keys('new.keys', 'n');
write_cookie_keys('rotated.keys', 'n', 'k');
write_cookie_keys('foreign.keys', 'f');
our %saved;
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

=== TEST 2: a replayed or mismatched state gets 400 and no session
--- http_config
oauth2_issuer $TEST_OP;
oauth2_client_id nginx;
oauth2_client_secret nginx-secret;
oauth2_cookie_secret_file $TEST_ROOT/cookie.keys;
oauth2_cookie_secure off;
oauth2_scope openid email profile;
--- config
location / {
    oauth2_auth on;
    add_header X-Sub $oauth2_sub always;
    add_header X-Method $oauth2_auth_method always;
    add_header X-Error $oauth2_error always;
    empty_gif;
}
location /api/ {
    oauth2_auth on;
    oauth2_on_failure 401;
    add_header X-Sub $oauth2_sub always;
    empty_gif;
}
location = /oauth2/callback { oauth2_callback; }
location = /logout { oauth2_sign_out; }
--- test
my $b = browser();
my $base = "http://127.0.0.1:" . nginx_port();
my $r = $b->get("$base/x", { accept => 'text/html' });
my $back = $b->login_at_provider($r->{headers}{location}, 'alice');
my $cb_url = OAuth2Browser::absolute($base, $back->{headers}{location});
my %jar = %{ $b->{jar} };   # the browser as it was before the callback
my ($state) = $cb_url =~ /state=([^&]+)/;
(my $wrong = $cb_url) =~ s/state=[^&]+/state=AAAA${state}/;
my $m = $b->get($wrong, { accept => 'text/html' });
is($m->{status}, 400, 'mismatched state: 400');
ok(!defined $b->cookie('oauth2_session'), 'no session after a mismatch');
my $ok = $b->get($cb_url, { accept => 'text/html' });
is($ok->{status}, 302, 'the real callback works');
# replay: the same callback URL with the same (captured) state cookie
my $evil = browser();
$evil->{jar} = { %jar };
my $replay = $evil->get($cb_url, { accept => 'text/html' });
is($replay->{status}, 400, 'replayed state with the captured cookie: 400');
ok(!defined $evil->cookie('oauth2_session'), 'no session from a replay');
my $nocookie = browser()->get($cb_url, { accept => 'text/html' });
is($nocookie->{status}, 400, 'no state cookie: 400');
is(browser()->get("$base/oauth2/callback", { accept => 'text/html' })->{status}, 400, 'no parameters: 400');
my $two = browser();
$two->{jar} = { %jar };
is($two->get("$cb_url&state=$state")->{status}, 400, 'state given twice: 400');
--- error_log
oauth2: callback: no valid state cookie for this state
oauth2: callback: the state was already used

=== TEST 3: the provider's error reply is shown escaped, no loop
--- http_config
oauth2_issuer $TEST_OP;
oauth2_client_id nginx;
oauth2_client_secret nginx-secret;
oauth2_cookie_secret_file $TEST_ROOT/cookie.keys;
oauth2_cookie_secure off;
oauth2_scope openid email profile;
--- config
location / {
    oauth2_auth on;
    add_header X-Sub $oauth2_sub always;
    add_header X-Method $oauth2_auth_method always;
    add_header X-Error $oauth2_error always;
    empty_gif;
}
location /api/ {
    oauth2_auth on;
    oauth2_on_failure 401;
    add_header X-Sub $oauth2_sub always;
    empty_gif;
}
location = /oauth2/callback { oauth2_callback; }
location = /logout { oauth2_sign_out; }
--- test
my $b = browser();
my $base = "http://127.0.0.1:" . nginx_port();
my $r = $b->get("$base/oauth2/callback?error=access_denied&error_description=%3Cscript%3Ealert(1)%3C%2Fscript%3E&state=x");
is($r->{status}, 403, 'access_denied: 403');
like($r->{content}, qr/access_denied/, 'the error code is shown');
unlike($r->{content}, qr/<script>/, 'the description is not reflected');
ok(!defined $r->{headers}{location}, 'no redirect (no loop)');
$r = $b->get("$base/oauth2/callback?error=%3Cb%3Eserver_error%3C%2Fb%3E");
is($r->{status}, 401, 'other errors: 401');
unlike($r->{content}, qr/<b>server_error/, 'HTML in the code is escaped');
like($r->{content}, qr/&lt;b&gt;server_error/, 'shown escaped');

=== TEST 4: auto: browser navigations are redirected, XHR, fetch, JSON and curl get 401
--- http_config
oauth2_issuer $TEST_OP;
oauth2_client_id nginx;
oauth2_client_secret nginx-secret;
oauth2_cookie_secret_file $TEST_ROOT/cookie.keys;
oauth2_cookie_secure off;
oauth2_scope openid email profile;
--- config
location / {
    oauth2_auth on;
    add_header X-Sub $oauth2_sub always;
    add_header X-Method $oauth2_auth_method always;
    add_header X-Error $oauth2_error always;
    empty_gif;
}
location /api/ {
    oauth2_auth on;
    oauth2_on_failure 401;
    add_header X-Sub $oauth2_sub always;
    empty_gif;
}
location = /oauth2/callback { oauth2_callback; }
location = /logout { oauth2_sign_out; }
--- test
my @nav = (
    [{ accept => 'text/html,application/xhtml+xml' }, 'Accept text/html'],
    [{ accept => '*/*', 'sec-fetch-mode' => 'navigate' }, 'Sec-Fetch-Mode navigate'],
);
my @api = (
    [{ accept => 'application/json' }, 'JSON client'],
    [{ accept => '*/*' }, 'curl'],
    [{ accept => 'text/html', 'sec-fetch-mode' => 'cors' }, 'fetch()'],
    [{ accept => 'text/html', 'x-requested-with' => 'XMLHttpRequest' }, 'XHR'],
    [{}, 'no headers'],
);
for (@nav) { is(http_get('/page', $_->[0])->{status}, 302, "$_->[1]: redirect") }
for (@api) {
    my $r = http_get('/page', $_->[0]);
    is($r->{status}, 401, "$_->[1]: 401");
    is($r->{headers}{'www-authenticate'}, 'Bearer realm="localhost"', "$_->[1]: challenge");
}
is(http_get('/page', { accept => 'text/html' }, 'POST')->{status}, 401, 'POST with text/html: 401');
is(http_get('/api/x', { accept => 'text/html' })->{status}, 401, 'a 401 location never redirects');
my $r = http_get('/page', { accept => 'text/html', authorization => 'Bearer bad.bad.bad' });
is($r->{status}, 401, 'an invalid bearer token is never redirected');
like($r->{headers}{'www-authenticate'}, qr/error="invalid_token"/, 'invalid_token');
$r = http_get('/page', { 'access-control-request-method' => 'GET' }, 'OPTIONS');
isnt($r->{status}, 401, 'CORS preflight is not authenticated');
isnt($r->{status}, 302, 'nor redirected');

=== TEST 5: tampered, truncated, foreign-key and expired session cookies are unauthenticated, never 500
--- http_config
oauth2_issuer $TEST_OP;
oauth2_client_id nginx;
oauth2_client_secret nginx-secret;
oauth2_cookie_secret_file $TEST_ROOT/cookie.keys;
oauth2_cookie_secure off;
oauth2_scope openid email profile;
oauth2_session_lifetime 3s;
--- config
location / {
    oauth2_auth on;
    add_header X-Sub $oauth2_sub always;
    add_header X-Method $oauth2_auth_method always;
    add_header X-Error $oauth2_error always;
    empty_gif;
}
location /api/ {
    oauth2_auth on;
    oauth2_on_failure 401;
    add_header X-Sub $oauth2_sub always;
    empty_gif;
}
location = /oauth2/callback { oauth2_callback; }
location = /logout { oauth2_sign_out; }
--- test
my $b = browser();
my $base = "http://127.0.0.1:" . nginx_port();
is($b->login("$base/")->{status}, 302, 'logged in');
my $good = $b->cookie('oauth2_session');
is($b->get("$base/api/x")->{status}, 200, 'valid session');
my %cases = (
    tampered => do { my $c = $good; substr($c, 20, 1) = substr($c, 20, 1) eq 'A' ? 'B' : 'A'; $c },
    truncated => substr($good, 0, length($good) - 10),
    garbage => 'v1.garbage!!',
    empty => '',
    'not sealed' => 'eyJzdWIiOiJhZG1pbiJ9',
    'chunk bomb' => '99999.' . substr($good, 3),
);
for my $name (sort keys %cases) {
    my $e = browser();
    $e->set_cookie('oauth2_session', $cases{$name});
    my $r = $e->get("$base/api/x");
    is($r->{status}, 401, "$name cookie: 401 on the API");
    $r = $e->get("$base/page", { accept => 'text/html' });
    is($r->{status}, 302, "$name cookie: a browser is sent to log in");
}
sleep 3.5;
my $r = $b->get("$base/api/x");
is($r->{status}, 401, 'past oauth2_session_lifetime: 401');
--- error_log
oauth2: session cookie rejected

=== TEST 6: log in for the key rotation test
--- http_config
oauth2_issuer $TEST_OP;
oauth2_client_id nginx;
oauth2_client_secret nginx-secret;
oauth2_cookie_secret_file $TEST_ROOT/cookie.keys;
oauth2_cookie_secure off;
oauth2_scope openid email profile;
--- config
location / {
    oauth2_auth on;
    add_header X-Sub $oauth2_sub always;
    add_header X-Method $oauth2_auth_method always;
    add_header X-Error $oauth2_error always;
    empty_gif;
}
location /api/ {
    oauth2_auth on;
    oauth2_on_failure 401;
    add_header X-Sub $oauth2_sub always;
    empty_gif;
}
location = /oauth2/callback { oauth2_callback; }
location = /logout { oauth2_sign_out; }
--- test
my $b = browser();
is(browser_login_ok($b), 1, 'logged in with the old key');
$main::saved{old} = $b->cookie('oauth2_session');
sub browser_login_ok { my $b = shift; my $base = "http://127.0.0.1:" . nginx_port(); $b->login("$base/")->{status} == 302 && $b->get("$base/api/x")->{status} == 200 ? 1 : 0 }

=== TEST 7: key rotation: a new key first, the old one second; old cookies still open
--- http_config
oauth2_issuer $TEST_OP;
oauth2_client_id nginx;
oauth2_client_secret nginx-secret;
oauth2_cookie_secret_file $TEST_ROOT/rotated.keys;
oauth2_cookie_secure off;
oauth2_scope openid email profile;
--- config
location / {
    oauth2_auth on;
    add_header X-Sub $oauth2_sub always;
    add_header X-Method $oauth2_auth_method always;
    add_header X-Error $oauth2_error always;
    empty_gif;
}
location /api/ {
    oauth2_auth on;
    oauth2_on_failure 401;
    add_header X-Sub $oauth2_sub always;
    empty_gif;
}
location = /oauth2/callback { oauth2_callback; }
location = /logout { oauth2_sign_out; }
--- test
my $base = "http://127.0.0.1:" . nginx_port();
my $b = browser();
$b->set_cookie('oauth2_session', $main::saved{old});
my $r = $b->get("$base/api/x");
is($r->{status}, 200, 'the old cookie opens with the rotated key file');
is($r->{headers}{'x-sub'}, 'alice', 'same identity');
my $n = browser();
$n->login("$base/");
$main::saved{new} = $n->cookie('oauth2_session');
isnt($main::saved{new}, undef, 'new login');

=== TEST 8: after rotation, a cookie sealed with a removed key no longer opens
--- http_config
oauth2_issuer $TEST_OP;
oauth2_client_id nginx;
oauth2_client_secret nginx-secret;
oauth2_cookie_secret_file $TEST_ROOT/foreign.keys;
oauth2_cookie_secure off;
oauth2_scope openid email profile;
--- config
location / {
    oauth2_auth on;
    add_header X-Sub $oauth2_sub always;
    add_header X-Method $oauth2_auth_method always;
    add_header X-Error $oauth2_error always;
    empty_gif;
}
location /api/ {
    oauth2_auth on;
    oauth2_on_failure 401;
    add_header X-Sub $oauth2_sub always;
    empty_gif;
}
location = /oauth2/callback { oauth2_callback; }
location = /logout { oauth2_sign_out; }
--- test
my $base = "http://127.0.0.1:" . nginx_port();
my $b = browser();
$b->set_cookie('oauth2_session', $main::saved{old});
is($b->get("$base/api/x")->{status}, 401, 'cookie from another key: 401');

=== TEST 9: cookie chunking with a large ID token
--- http_config
oauth2_issuer $TEST_OP;
oauth2_client_id nginx;
oauth2_client_secret nginx-secret;
oauth2_cookie_secret_file $TEST_ROOT/cookie.keys;
oauth2_cookie_secure off;
oauth2_scope openid email profile;
--- config
location / {
    oauth2_auth on;
    add_header X-Sub $oauth2_sub always;
    add_header X-Method $oauth2_auth_method always;
    add_header X-Error $oauth2_error always;
    empty_gif;
}
location /api/ {
    oauth2_auth on;
    oauth2_on_failure 401;
    add_header X-Sub $oauth2_sub always;
    empty_gif;
}
location = /oauth2/callback { oauth2_callback; }
large_client_header_buffers 4 32k;
location = /logout { oauth2_sign_out; }
--- test
my $base = "http://127.0.0.1:" . nginx_port();
my $b = browser();
my $cb = $b->login("$base/big", 'big-user');
is($cb->{status}, 302, 'logged in with a 6 KB ID token');
my @chunks = grep { /^oauth2_session(_\d+)?$/ } $b->cookie_names;
cmp_ok(scalar @chunks, '>=', 2, 'the session is split into chunks: @chunks');
ok(length($b->cookie($_)) <= 4000, "$_ is at most 4000 bytes") for @chunks;
my $r = $b->get("$base/api/x");
is($r->{status}, 200, 'the chunks are reassembled');
is($r->{headers}{'x-sub'}, 'big-user', 'identity from the chunked session');
$b->drop_cookie('oauth2_session_1');
is($b->get("$base/api/x")->{status}, 401, 'a missing chunk: unauthenticated');
--- no_error_log
[error]

=== TEST 10: parallel logins in two tabs each get their own state; at most 4 are kept
--- http_config
oauth2_issuer $TEST_OP;
oauth2_client_id nginx;
oauth2_client_secret nginx-secret;
oauth2_cookie_secret_file $TEST_ROOT/cookie.keys;
oauth2_cookie_secure off;
oauth2_scope openid email profile;
--- config
location / {
    oauth2_auth on;
    add_header X-Sub $oauth2_sub always;
    add_header X-Method $oauth2_auth_method always;
    add_header X-Error $oauth2_error always;
    empty_gif;
}
location /api/ {
    oauth2_auth on;
    oauth2_on_failure 401;
    add_header X-Sub $oauth2_sub always;
    empty_gif;
}
location = /oauth2/callback { oauth2_callback; }
location = /logout { oauth2_sign_out; }
--- test
my $base = "http://127.0.0.1:" . nginx_port();
my $b = browser();
my $t1 = $b->get("$base/one", { accept => 'text/html' });
my $t2 = $b->get("$base/two", { accept => 'text/html' });
my @st = grep { /_st_/ } $b->cookie_names;
is(scalar @st, 2, 'two state cookies');
my $back2 = $b->login_at_provider($t2->{headers}{location}, 'alice');
my $back1 = $b->login_at_provider($t1->{headers}{location}, 'alice');
my $r2 = $b->get(OAuth2Browser::absolute($base, $back2->{headers}{location}));
like($r2->{headers}{location}, qr{/two$}, 'tab two returns to /two');
my $r1 = $b->get(OAuth2Browser::absolute($base, $back1->{headers}{location}));
like($r1->{headers}{location}, qr{/one$}, 'tab one returns to /one');
my $c = browser();
$c->get("$base/p$_", { accept => 'text/html' }) for 1 .. 7;
@st = grep { /_st_/ } $c->cookie_names;
is(scalar @st, 4, 'at most 4 state cookies are kept');

=== TEST 11: sign-out clears every module cookie and goes to end_session_endpoint with id_token_hint
--- http_config
oauth2_issuer $TEST_OP;
oauth2_client_id nginx;
oauth2_client_secret nginx-secret;
oauth2_cookie_secret_file $TEST_ROOT/cookie.keys;
oauth2_cookie_secure off;
oauth2_scope openid email profile;
oauth2_post_logout_redirect_uri /bye;
--- config
location / {
    oauth2_auth on;
    add_header X-Sub $oauth2_sub always;
    add_header X-Method $oauth2_auth_method always;
    add_header X-Error $oauth2_error always;
    empty_gif;
}
location /api/ {
    oauth2_auth on;
    oauth2_on_failure 401;
    add_header X-Sub $oauth2_sub always;
    empty_gif;
}
location = /oauth2/callback { oauth2_callback; }
location = /logout { oauth2_sign_out; }
--- test
my $base = "http://127.0.0.1:" . nginx_port();
my $b = browser();
$b->login("$base/");
$b->get("$base/pending", { accept => 'text/html' });   # a state cookie too
my $r = $b->get("$base/logout");
is($r->{status}, 302, 'sign-out redirects');
like($r->{headers}{location}, qr{^\Q${\ op_url()}\E/session/end\?}, 'to the end_session_endpoint');
like($r->{headers}{location}, qr/id_token_hint=ey/, 'with id_token_hint');
like($r->{headers}{location}, qr/post_logout_redirect_uri=http%3A%2F%2F127\.0\.0\.1%3A\d+%2Fbye/, 'with post_logout_redirect_uri');
is(join(',', grep { /^oauth2_/ } $b->cookie_names), '', 'all module cookies cleared');
is($b->get("$base/api/x")->{status}, 401, 'signed out');

=== TEST 12: cookie attributes: Secure by default, SameSite, Domain, Path, Max-Age from the lifetime
--- http_config
oauth2_issuer $TEST_OP;
oauth2_client_id nginx;
oauth2_client_secret nginx-secret;
oauth2_cookie_secret_file $TEST_ROOT/cookie.keys;
oauth2_cookie_samesite strict;
oauth2_cookie_domain 127.0.0.1;
oauth2_cookie_path /app;
oauth2_cookie_name sid;
oauth2_session_lifetime 1h;
--- config
location / { oauth2_auth on; empty_gif; }
location = /oauth2/callback { oauth2_callback; }
--- test
my $base = "http://127.0.0.1:" . nginx_port();
my $b = browser();
my $r = $b->get("$base/app/x", { accept => 'text/html' });
my ($state) = grep { /^sid_st_/ } @{ ref $r->{headers}{'set-cookie'} ? $r->{headers}{'set-cookie'} : [$r->{headers}{'set-cookie'}] };
like($state, qr/; Path=\/;/, 'state cookie on path / (the callback must see it)');
like($state, qr/; Secure/, 'state cookie Secure by default');
like($state, qr/SameSite=Lax/, 'state cookie stays Lax (the callback is a cross-site navigation)');
my $back = $b->login_at_provider($r->{headers}{location}, 'alice');
my $cb = $b->get(OAuth2Browser::absolute($base, $back->{headers}{location}));
my @sc = ref $cb->{headers}{'set-cookie'} ? @{ $cb->{headers}{'set-cookie'} } : ($cb->{headers}{'set-cookie'});
my ($sess) = grep { /^sid=v1\./ } @sc;
ok($sess, 'session cookie named by oauth2_cookie_name');
like($sess, qr/; Path=\/app;/, 'Path');
like($sess, qr/; Domain=127\.0\.0\.1/, 'Domain');
like($sess, qr/; Max-Age=(3600|3599);/, 'Max-Age from oauth2_session_lifetime');
like($sess, qr/; HttpOnly; Secure; SameSite=Strict$/, 'HttpOnly, Secure, SameSite=Strict');
