# Sessions in shared memory (SPEC §8) and logout that reaches them (§9):
# the cookie holds only a sealed id, every worker sees the record, it
# survives a reload, sign-out and the provider's back-channel and
# front-channel logouts delete it, login states are single-use, a full zone
# drops the least recently used session and nothing crashes.
use strict;
use warnings;
use lib 't/lib';
use OAuth2Test;

my $port = fixed_port();
op_start(
    redirect_uri => ["http://127.0.0.1:$port/oauth2/callback"],
    backchannel_uri => "http://127.0.0.1:$port/oauth2/backchannel",
);
write_cookie_keys('cookie.keys', 's');
run_tests();

__DATA__

=== TEST 1: nginx -t: a zone that is too small
--- http_config
oauth2_session_store shm zone=s:64k;
--- config
location / { }
--- must_die
--- error_log
zone "s" is too small

=== TEST 2: nginx -t: a malformed store
--- http_config
oauth2_session_store shm s:1m;
--- config
location / { }
--- must_die
--- error_log
invalid parameter "s:1m", it must be "zone=NAME:SIZE"

=== TEST 3: nginx -t: the logout endpoints need a server-side store
--- http_config
oauth2_issuer $TEST_OP;
oauth2_client_id nginx;
oauth2_cookie_secret_file $TEST_ROOT/cookie.keys;
--- config
location = /oauth2/backchannel { oauth2_backchannel_logout; }
--- must_die
--- error_log
"oauth2_backchannel_logout" needs a server-side session store

=== TEST 4: two workers share the sessions; the cookie is a small sealed id; a reload keeps them
--- workers
2
--- http_config
oauth2_issuer $TEST_OP;
oauth2_client_id nginx;
oauth2_client_secret nginx-secret;
oauth2_cookie_secret_file $TEST_ROOT/cookie.keys;
oauth2_cookie_secure off;
oauth2_session_store shm zone=sessions:1m;
--- config
listen 127.0.0.1:$TEST_PORT2 reuseport;
location / { oauth2_auth on; add_header X-Pid $pid; add_header X-Sub $oauth2_claim_sub; empty_gif; }
location = /oauth2/callback { oauth2_callback; }
--- test
my $base = "http://127.0.0.1:" . nginx_port();
my $b = browser();
my $r = $b->login("$base/app");
is($r->{status}, 302, 'logged in');
my $c = $b->cookie('oauth2_session');
ok(defined $c && length($c) < 200, 'the session cookie is under 200 bytes (' . length($c // '') . ')');
is(scalar(grep { /^oauth2_session_\d/ } $b->cookie_names), 0, 'no chunk cookies');
# fresh connections to the reuseport listener land on both workers
my (%pids, $bad);
for (1 .. 40) {
    my $t = HTTP::Tiny->new(keep_alive => 0);
    my $x = $t->get("http://127.0.0.1:" . nginx_port2() . "/app", { headers => { cookie => "oauth2_session=$c" } });
    $bad++ unless $x->{status} == 200 && $x->{headers}{'x-sub'} eq 'alice';
    $pids{ $x->{headers}{'x-pid'} // '' }++;
}
is($bad // 0, 0, 'every request authenticated');
is(scalar(keys %pids), 2, 'on both workers: ' . join(',', sort keys %pids));
nginx_reload();
my @after = map { HTTP::Tiny->new(keep_alive => 0)->get("http://127.0.0.1:" . nginx_port2() . "/app", { headers => { cookie => "oauth2_session=$c" } })->{status} } 1 .. 6;
is("@after", '200 200 200 200 200 200', 'the session survives nginx -s reload');

=== TEST 5: sign-out deletes the record: a copy of the old cookie opens nothing
--- http_config
oauth2_issuer $TEST_OP;
oauth2_client_id nginx;
oauth2_client_secret nginx-secret;
oauth2_cookie_secret_file $TEST_ROOT/cookie.keys;
oauth2_cookie_secure off;
oauth2_session_store shm zone=sessions:1m;
--- config
location / { oauth2_auth on; oauth2_on_failure 401; empty_gif; }
location /app { oauth2_auth on; empty_gif; }
location = /oauth2/callback { oauth2_callback; }
location = /logout { oauth2_sign_out; }
--- test
my $base = "http://127.0.0.1:" . nginx_port();
my $b = browser();
$b->login("$base/app");
my $c = $b->cookie('oauth2_session');
is(http_get('/api', { cookie => "oauth2_session=$c" })->{status}, 200, 'the session works');
is($b->get("$base/logout")->{status}, 302, 'signed out');
is(http_get('/api', { cookie => "oauth2_session=$c" })->{status}, 401, 'the old cookie is refused');
--- error_log
oauth2: signed out

=== TEST 6: a login state is single-use: the callback replayed is refused
--- http_config
oauth2_issuer $TEST_OP;
oauth2_client_id nginx;
oauth2_client_secret nginx-secret;
oauth2_cookie_secret_file $TEST_ROOT/cookie.keys;
oauth2_cookie_secure off;
oauth2_session_store shm zone=sessions:1m;
--- workers
2
--- config
location / { oauth2_auth on; empty_gif; }
location = /oauth2/callback { oauth2_callback; }
--- test
my $base = "http://127.0.0.1:" . nginx_port();
my $b = browser();
my $r = $b->get("$base/app", { accept => 'text/html' });
my ($state_cookie) = grep { /^oauth2_session_st_/ } $b->cookie_names;
my $state_value = $b->cookie($state_cookie);
my $back = $b->login_at_provider($r->{headers}{location}, 'alice');
my $cb = $back->{headers}{location};
is($b->get($cb)->{status}, 302, 'the callback logs in');
# the same callback again, with the state cookie put back (on any worker)
my @again = map { HTTP::Tiny->new(keep_alive => 0)->get($cb, { headers => { cookie => "$state_cookie=$state_value" } })->{status} } 1 .. 4;
is("@again", '400 400 400 400', 'every replay is refused');
--- error_log
the state was already used

=== TEST 7: back-channel logout from the provider ends the session
--- http_config
oauth2_issuer $TEST_OP;
oauth2_client_id nginx;
oauth2_client_secret nginx-secret;
oauth2_cookie_secret_file $TEST_ROOT/cookie.keys;
oauth2_cookie_secure off;
oauth2_session_store shm zone=sessions:1m;
--- workers
2
--- config
location / { oauth2_auth on; oauth2_on_failure 401; empty_gif; }
location /app { oauth2_auth on; empty_gif; }
location = /oauth2/callback { oauth2_callback; }
location = /oauth2/backchannel { oauth2_backchannel_logout; }
--- test
my $base = "http://127.0.0.1:" . nginx_port();
my $b = browser();
$b->login("$base/app");
my $other = browser();
$other->login("$base/app", 'bob');
my $c = $b->cookie('oauth2_session');
is(http_get('/api', { cookie => "oauth2_session=$c" })->{status}, 200, 'the session works');
my $r = logout_at_provider($b);
ok($r->{status} =~ /^(200|30[23])$/, "logged out at the provider ($r->{status})");
my @after = map { HTTP::Tiny->new(keep_alive => 0)->get("$base/api", { headers => { cookie => "oauth2_session=$c" } })->{status} } 1 .. 4;
is("@after", '401 401 401 401', 'the session is refused on every worker');
is($other->get("$base/api")->{status}, 200, "another user's session is untouched");
--- error_log
oauth2: back-channel logout: 1 session(s) ended

=== TEST 8: back-channel logout tokens: every check, replay, bad requests
--- http_config
oauth2_issuer $TEST_OP;
oauth2_client_id nginx;
oauth2_client_secret nginx-secret;
oauth2_cookie_secret_file $TEST_ROOT/cookie.keys;
oauth2_cookie_secure off;
oauth2_session_store shm zone=sessions:1m;
--- config
location = /oauth2/backchannel { oauth2_backchannel_logout; }
location / { oauth2_auth on; oauth2_on_failure 401; empty_gif; }
--- test
use JSON::PP;
my $url = "http://127.0.0.1:" . nginx_port() . "/oauth2/backchannel";
my $now = time;
my $ev = { 'http://schemas.openid.net/event/backchannel-logout' => {} };
my %good = (aud => 'nginx', jti => "j-$now", sid => 'no-such-sid', sub => 'alice', events => $ev,
            iat => int($now), exp => int($now) + 120, client_id => undef, scope => undef);
my $logout = sub {
    my ($over, $hdr) = @_;
    my %c = (%good, %{ $over || {} });
    mint(encode_json({ header => { typ => 'logout+jwt', %{ $hdr || {} } }, claims => \%c }));
};
my $post = sub {
    my ($body) = @_;
    HTTP::Tiny->new->post($url, { headers => { 'content-type' => 'application/x-www-form-urlencoded' }, content => $body });
};
my $ok = $post->('logout_token=' . $logout->());
is($ok->{status}, 200, 'a valid logout token');
is($ok->{headers}{'cache-control'}, 'no-store', 'no-store');
my $again = $post->('logout_token=' . $logout->());
is($again->{status}, 400, 'the same jti again: refused');
like($again->{content}, qr/"error":"invalid_request"/, 'with a JSON error');
like($again->{content}, qr/used before/, 'replay named');
my $n = 0;
for my $case (
    [{ nonce => 'n' }, {}, 'nonce'],
    [{ events => undef }, {}, 'no event'],
    [{ events => { 'x' => {} } }, {}, 'another event'],
    [{ aud => 'someone-else' }, {}, 'wrong audience'],
    [{ iss => op_url() . '/' }, {}, 'issuer not exact'],
    [{ iat => int($now) - 3600 }, {}, 'iat too old'],
    [{ sid => undef, sub => undef }, {}, 'neither sid nor sub'],
    [{ jti => undef }, {}, 'no jti'],
    [{}, { typ => 'at+jwt' }, 'an access token type'],
) {
    my ($over, $hdr, $what) = @$case;
    $n++;
    my $r = $post->('logout_token=' . $logout->({ jti => "k$n-$now", %$over }, $hdr));
    is($r->{status}, 400, "refused: $what");
}
is($post->('logout_token=' . mint(encode_json({ key => 'foreign', header => { typ => 'logout+jwt' }, claims => { %good, jti => "f-$now" } })))->{status}, 400, 'refused: another key');
is($post->('')->{status}, 400, 'no logout_token');
is($post->('logout_token=a&logout_token=b')->{status}, 400, 'two logout_tokens');
is($post->('logout_token=garbage')->{status}, 400, 'garbage');
is(HTTP::Tiny->new->get($url)->{status}, 405, 'GET: 405');
--- error_log
back-channel logout refused: the logout token was used before
back-channel logout refused: the logout token carries a nonce

=== TEST 9: front-channel logout: ?iss&sid ends that session (no cookie needed)
--- http_config
oauth2_issuer $TEST_OP;
oauth2_client_id nginx;
oauth2_client_secret nginx-secret;
oauth2_cookie_secret_file $TEST_ROOT/cookie.keys;
oauth2_cookie_secure off;
oauth2_session_store shm zone=sessions:1m;
--- config
location / { oauth2_auth on; oauth2_on_failure 401; add_header X-Sid $oauth2_claim_sid; empty_gif; }
location /app { oauth2_auth on; empty_gif; }
location = /oauth2/callback { oauth2_callback; }
location = /oauth2/frontchannel { oauth2_frontchannel_logout; }
--- test
my $base = "http://127.0.0.1:" . nginx_port();
my $b = browser();
$b->login("$base/app");
my $r = $b->get("$base/api");
my $sid = $r->{headers}{'x-sid'};
ok(defined $sid && length $sid, 'the session has a sid');
my $esc = sub { my $s = shift; $s =~ s/([^A-Za-z0-9\-._~])/sprintf("%%%02X", ord $1)/ge; $s };
is(http_get('/oauth2/frontchannel?iss=' . $esc->(op_url()) . '&sid=other')->{status}, 200, 'an unknown sid: 200');
is($b->get("$base/api")->{status}, 200, 'the session still works');
is(http_get('/oauth2/frontchannel?iss=' . $esc->('http://evil.test') . "&sid=$sid")->{status}, 400, 'a foreign issuer: 400');
is(http_get("/oauth2/frontchannel?sid=$sid")->{status}, 400, 'sid without iss: 400');
my $f = http_get('/oauth2/frontchannel?iss=' . $esc->(op_url()) . "&sid=" . $esc->($sid));
is($f->{status}, 200, 'front-channel logout');
is($f->{headers}{'cache-control'}, 'no-store', 'no-store');
is($b->get("$base/api")->{status}, 401, 'the session ended');
--- error_log
oauth2: front-channel logout: 1 session(s) ended

=== TEST 10: a full zone drops the least recently used session; nothing crashes
--- http_config
oauth2_issuer $TEST_OP;
oauth2_client_id nginx;
oauth2_client_secret nginx-secret;
oauth2_cookie_secret_file $TEST_ROOT/cookie.keys;
oauth2_cookie_secure off;
oauth2_session_store shm zone=tiny:128k;
--- config
location / { oauth2_auth on; oauth2_on_failure 401; empty_gif; }
location /app { oauth2_auth on; empty_gif; }
location = /oauth2/callback { oauth2_callback; }
--- test
my $base = "http://127.0.0.1:" . nginx_port();
my @cookies;
for my $i (1 .. 16) {
    my $b = browser();
    my $r = $b->login("$base/app", "user$i");
    push @cookies, $b->cookie('oauth2_session');
}
is(scalar(grep { defined } @cookies), 16, 'every login got a session');
my @st = map { http_get('/api', { cookie => "oauth2_session=$_" })->{status} } @cookies;
is($st[-1], 200, 'the newest session works');
is($st[0], 401, 'the oldest was dropped');
--- error_log
is full: 1 least recently used session(s) dropped
