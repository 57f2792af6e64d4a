# The login against a provider that puts profile claims only in UserInfo
# (OpenID Connect Core §5.4): UserInfo at login, HS256 ID tokens verified
# with the client secret, configuration mistakes logged at error level,
# redirect URIs with variables, and the login's edges (Cancel, a reused
# state) answered with a page that lets the user go on.
use strict;
use warnings;
use lib 't/lib';
use OAuth2Test;
use Digest::SHA qw(hmac_sha256);
use MIME::Base64 qw(encode_base64url);

my $port = fixed_port();
op_start(redirect_uri => ["http://127.0.0.1:$port/oauth2/callback"], conform => 1);
write_cookie_keys('cookie.keys', 'u');
run_tests();

sub b64j { my ($h) = @_; encode_base64url(JSON::PP->new->canonical->encode($h)) }

# an HS256 JWT signed with $key (as a client that knows the client secret could make)
sub hs256 {
    my ($key, $claims) = @_;
    require JSON::PP;
    my $input = b64j({ alg => 'HS256', typ => 'at+jwt' }) . '.' . b64j($claims);
    return "$input." . encode_base64url(hmac_sha256($input, $key));
}

__DATA__

=== TEST 1: UserInfo: claims the ID token lacks reach the variables (and survive a reload of the page)
--- http_config
oauth2_issuer $TEST_OP;
oauth2_client_id nginx;
oauth2_client_secret nginx-secret;
oauth2_scope openid email profile;
oauth2_cookie_secret_file $TEST_ROOT/cookie.keys;
oauth2_cookie_secure off;
--- config
location / {
    oauth2_auth on;
    add_header X-Sub $oauth2_sub always;
    add_header X-Email $oauth2_email always;
    add_header X-Name $oauth2_claim_name always;
    empty_gif;
}
location = /oauth2/callback { oauth2_callback; }
--- test
my $base = "http://127.0.0.1:" . nginx_port();
my $before = op_stat("/me");
my $b = browser();
is($b->login("$base/")->{status}, 302, 'logged in');
my $r = $b->get("$base/x");
is($r->{headers}{'x-sub'}, 'alice', '$oauth2_sub from the ID token');
is($r->{headers}{'x-email'}, 'alice@example.test', '$oauth2_email from UserInfo (not in the ID token)');
is($r->{headers}{'x-name'}, 'alice', '$oauth2_claim_name from UserInfo');
my $after = op_stat("/me");
is($after - $before, 1, 'one UserInfo call at login, none per request');
--- no_error_log
[error]

=== TEST 2: with oauth2_userinfo off, only the ID token's claims (here: no email)
--- http_config
oauth2_issuer $TEST_OP;
oauth2_client_id nginx;
oauth2_client_secret nginx-secret;
oauth2_scope openid email profile;
oauth2_cookie_secret_file $TEST_ROOT/cookie.keys;
oauth2_cookie_secure off;
oauth2_userinfo off;
--- config
location / { oauth2_auth on; add_header X-Sub $oauth2_sub always; add_header X-Email $oauth2_email always; empty_gif; }
location = /oauth2/callback { oauth2_callback; }
--- test
my $base = "http://127.0.0.1:" . nginx_port();
my $b = browser();
is($b->login("$base/")->{status}, 302, 'logged in');
my $r = $b->get("$base/x");
is($r->{headers}{'x-sub'}, 'alice', 'identity from the ID token');
is($r->{headers}{'x-email'} // '', '', 'no email: this provider puts it in UserInfo only');

=== TEST 3: HS256 ID tokens are verified with the client secret; HS256 access tokens are not accepted
--- http_config
oauth2_issuer $TEST_OP;
oauth2_client_id nginx-hs;
oauth2_client_secret nginx-hs-secret-0123456789abcdef0123456789abcdef;
oauth2_algorithms RS256 HS256;
oauth2_cookie_secret_file $TEST_ROOT/cookie.keys;
oauth2_cookie_secure off;
--- config
location / { oauth2_auth on; add_header X-Sub $oauth2_sub always; empty_gif; }
location /api/ { oauth2_auth on; oauth2_on_failure 401; oauth2_audience nginx-hs; add_header X-Error $oauth2_error always; empty_gif; }
location = /oauth2/callback { oauth2_callback; }
--- test
my $base = "http://127.0.0.1:" . nginx_port();
my $b = browser();
is($b->login("$base/")->{status}, 302, 'login with an HS256 ID token');
is($b->get("$base/x")->{headers}{'x-sub'}, 'alice', 'session made');
my $forged = main::hs256('nginx-hs-secret-0123456789abcdef0123456789abcdef',
    { iss => op_url(), aud => 'nginx-hs', sub => 'mallory', iat => time, exp => time + 300 });
my $r = http_get('/api/', { Authorization => "Bearer $forged" });
is($r->{status}, 401, 'an access token signed with the client secret: 401');
--- no_error_log
[error]

=== TEST 4: an HS256 ID token where oauth2_algorithms does not list it: 401, an error line saying what to check
--- http_config
oauth2_issuer $TEST_OP;
oauth2_client_id nginx-hs;
oauth2_client_secret nginx-hs-secret-0123456789abcdef0123456789abcdef;
oauth2_cookie_secret_file $TEST_ROOT/cookie.keys;
oauth2_cookie_secure off;
--- config
location / { oauth2_auth on; empty_gif; }
location = /oauth2/callback { oauth2_callback; }
--- test
my $base = "http://127.0.0.1:" . nginx_port();
my $b = browser();
my $r = $b->login("$base/start");
is($r->{status}, 401, 'the login cannot be verified');
like($r->{content}, qr{<a href="/start">Continue</a>}, 'the page links back to where the login started');
ok(!defined $b->cookie('oauth2_session'), 'no session');
like(error_log_text(), qr/\[error\].*oauth2: callback: ID token rejected: bad_algorithm \(its algorithm is not in oauth2_algorithms/, 'an error line says what to check');

=== TEST 5: the token endpoint refuses the client: an error line saying what to check
--- http_config
oauth2_issuer $TEST_OP;
oauth2_client_id nginx;
oauth2_client_secret not-the-secret;
oauth2_cookie_secret_file $TEST_ROOT/cookie.keys;
oauth2_cookie_secure off;
--- config
location / { oauth2_auth on; empty_gif; }
location = /oauth2/callback { oauth2_callback; }
--- test
my $base = "http://127.0.0.1:" . nginx_port();
my $r = browser()->login("$base/");
is($r->{status}, 502, 'the login fails');
like(error_log_text(), qr/\[error\].*oauth2: callback: the token endpoint answered 401 \(invalid_client\); check oauth2_client_id and the client secret/, 'an error line says what to check');

=== TEST 6: redirect URIs with variables
--- http_config
oauth2_issuer $TEST_OP;
oauth2_client_id nginx;
oauth2_client_secret nginx-secret;
oauth2_cookie_secret_file $TEST_ROOT/cookie.keys;
oauth2_cookie_secure off;
oauth2_redirect_uri http://$http_host/oauth2/callback;
oauth2_post_logout_redirect_uri http://$http_host/signed-out;
--- config
location / { oauth2_auth on; add_header X-Sub $oauth2_sub always; empty_gif; }
location = /oauth2/callback { oauth2_callback; }
location = /oauth2/sign_out { oauth2_sign_out; }
--- test
my $base = "http://127.0.0.1:" . nginx_port();
my ($st, $resp) = raw_http("GET / HTTP/1.1\r\nHost: app.example.test:8443\r\nAccept: text/html\r\nConnection: close\r\n\r\n");
is($st, 302, 'a login starts');
like($resp, qr/^Location: .*redirect_uri=http%3A%2F%2Fapp\.example\.test%3A8443%2Foauth2%2Fcallback&/m, 'the variables are evaluated per request');
my $b = browser();
is($b->login("$base/")->{status}, 302, 'a whole login with it (the provider knows this host)');
is($b->get("$base/x")->{headers}{'x-sub'}, 'alice', 'logged in');
$r = $b->get("$base/oauth2/sign_out");
like($r->{headers}{location}, qr/post_logout_redirect_uri=http%3A%2F%2F127\.0\.0\.1%3A\d+%2Fsigned-out/, 'post_logout_redirect_uri too');

=== TEST 7: nginx -t: a redirect URI with variables must still be a path or a URL
--- http_config
oauth2_redirect_uri ftp://$host/cb;
--- config
location / { }
--- must_die
--- error_log
invalid URI "ftp://$host/cb" in "oauth2_redirect_uri" directive

=== TEST 8: Cancel at the provider: 403 with a way back, the state cookie cleared; a reused state: 400 with a way on
--- http_config
oauth2_issuer $TEST_OP;
oauth2_client_id nginx;
oauth2_client_secret nginx-secret;
oauth2_cookie_secret_file $TEST_ROOT/cookie.keys;
oauth2_cookie_secure off;
--- config
location / { oauth2_auth on; empty_gif; }
location = /oauth2/callback { oauth2_callback; }
--- test
my $base = "http://127.0.0.1:" . nginx_port();
my $b = browser();
my $r = $b->get("$base/report?id=7", { accept => 'text/html' });
my ($state) = $r->{headers}{location} =~ /[?&]state=([^&]+)/;
my @st = grep { /_st_/ } $b->cookie_names;
is(scalar @st, 1, 'a state cookie while the login runs');
# the provider sends the user back with error=access_denied (what Cancel does)
$r = $b->get("$base/oauth2/callback?error=access_denied&state=$state&iss=" . op_url());
is($r->{status}, 403, 'access_denied: 403');
like($r->{content}, qr/login failed: access_denied/, 'the page says why');
like($r->{content}, qr{<a href="/report\?id=7">Continue</a>}, 'and links back to the page the login started from');
is(scalar(grep { /_st_/ } $b->cookie_names), 0, 'the state cookie is cleared');
# a complete login, then the same callback URL again (Back in the browser)
$r = $b->get("$base/", { accept => 'text/html' });
my $back = $b->login_at_provider($r->{headers}{location}, 'alice');
my $cb = OAuth2Browser::absolute($base, $back->{headers}{location});
is($b->get($cb)->{status}, 302, 'logged in');
$r = $b->get($cb);
is($r->{status}, 400, 'the same callback again: 400');
like($r->{content}, qr{<a href="/">Continue</a>}, 'with a way on');

=== TEST 9: an internal redirect (index) after the access phase keeps the session
--- setup
my $html = OAuth2Test::servroot() . '/html';
mkdir "$html/app";
open my $f, '>', "$html/app/index.html" or die $!;
print $f "the app\n";
close $f;
--- http_config
oauth2_issuer $TEST_OP;
oauth2_client_id nginx;
oauth2_client_secret nginx-secret;
oauth2_cookie_secret_file $TEST_ROOT/cookie.keys;
oauth2_cookie_secure off;
--- config
root $TEST_ROOT/html;
location /app/ { oauth2_auth on; add_header X-Sub $oauth2_sub always; }
location = /oauth2/callback { oauth2_callback; }
--- test
my $base = "http://127.0.0.1:" . nginx_port();
my $b = browser();
is($b->login("$base/app/")->{status}, 302, 'logged in');
my $r = $b->get("$base/app/");
is($r->{status}, 200, '/app/ (served by index, an internal redirect to /app/index.html): 200, not a new login');
like($r->{content}, qr/the app/, 'the page');
is($r->{headers}{'x-sub'}, 'alice', 'as alice');
