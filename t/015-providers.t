# Several providers per server: named oauth2_provider blocks against two real
# provider instances (other issuers, other keys). One set of metadata and
# keys per provider per worker; bearer tokens matched to their provider by
# exact iss; one callback for every provider; sessions bound to theirs.
use strict;
use warnings;
use lib 't/lib';
use OAuth2Test;

my $port = fixed_port();
op_start(redirect_uri => ["http://127.0.0.1:$port/oauth2/callback"]);
op2_start(redirect_uri => ["http://127.0.0.1:$port/oauth2/callback"]);
write_cookie_keys('cookie.keys', 'm');
run_tests();


__DATA__

=== TEST 1: nginx -t: oauth2_auth naming no block
--- http_config
oauth2_provider corp { issuer $TEST_OP; audience urn:test:api; }
--- config
location / { oauth2_auth corp partners; oauth2_on_failure 401; }
--- must_die
--- error_log
unknown provider "partners" in "oauth2_auth"

=== TEST 2: nginx -t: a duplicate provider name
--- http_config
oauth2_provider corp { issuer $TEST_OP; audience urn:test:api; }
oauth2_provider corp { issuer $TEST_OP2; audience urn:test:api; }
--- config
location / { }
--- must_die
--- error_log
duplicate provider "corp"

=== TEST 3: nginx -t: an unknown directive inside a block
--- http_config
oauth2_provider corp { issuer $TEST_OP; cookie_name x; }
--- config
location / { }
--- must_die
--- error_log
unknown directive "cookie_name" in "oauth2_provider" block

=== TEST 4: nginx -t: a bad value inside a block names the directive
--- http_config
oauth2_provider corp { issuer $TEST_OP; clock_skew forever; }
--- config
location / { }
--- must_die
--- error_log
in "clock_skew" directive

=== TEST 5: 20 locations and 3 providers: one discovery and one key set fetch per provider per worker
--- setup
my @eps = ('/.well-known/openid-configuration', '/jwks');
$main::before1 = { map { $_ => op_stat($_) } @eps };
$main::before2 = { map { $_ => op_stat($_, op2_url()) } @eps };
--- http_config
oauth2_provider corp { issuer $TEST_OP; audience urn:test:api; }
oauth2_provider corp-es { issuer $TEST_OP; audience urn:test:api:es256; }
oauth2_provider partners { issuer $TEST_OP2; audience urn:test:api; }
oauth2_on_failure 401;
--- config
location /l1 { oauth2_auth corp; empty_gif; }
location /l2 { oauth2_auth corp partners; empty_gif; }
location /l3 { oauth2_auth partners; empty_gif; }
location /l4 { oauth2_auth corp-es; empty_gif; }
location /l5 { oauth2_auth corp corp-es partners; empty_gif; }
location /l6 { oauth2_auth corp; empty_gif; }
location /l7 { oauth2_auth partners corp; empty_gif; }
location /l8 { oauth2_auth corp-es partners; empty_gif; }
location /l9 { oauth2_auth corp; oauth2_require_scope api:read; empty_gif; }
location /l10 { oauth2_auth partners; empty_gif; }
location /l11 { oauth2_auth corp; empty_gif; }
location /l12 { oauth2_auth corp partners; empty_gif; }
location /l13 { oauth2_auth partners; empty_gif; }
location /l14 { oauth2_auth corp-es; empty_gif; }
location /l15 { oauth2_auth corp; empty_gif; }
location /l16 { oauth2_auth corp; empty_gif; }
location /l17 { oauth2_auth partners corp-es; empty_gif; }
location /l18 { oauth2_auth corp; empty_gif; }
location /l19 { oauth2_auth partners; empty_gif; }
location /l20 { oauth2_auth corp corp-es; empty_gif; }
--- test
my $t1 = token();
my $t2 = token2();
is(http_get("/l$_", bearer($t1))->{status}, 200, "/l$_ with a token of the first provider") for 1, 2, 5, 6, 9, 11, 12, 15, 16, 18, 20;
is(http_get("/l$_", bearer($t2))->{status}, 200, "/l$_ with a token of the second") for 2, 3, 5, 7, 8, 10, 12, 13, 17, 19;
for my $ep ('/.well-known/openid-configuration', '/jwks') {
    is(op_stat($ep) - $main::before1->{$ep}, 1, "the first provider saw one $ep request (one worker)");
    is(op_stat($ep, op2_url()) - $main::before2->{$ep}, 1, "the second provider saw one $ep request");
}

=== TEST 6: bearer tokens go to the provider their iss names
--- http_config
oauth2_provider corp {
    issuer $TEST_OP;
    audience urn:test:api urn:test:opaque;
    client_id nginx;
    client_secret nginx-secret;
}
oauth2_provider partners { issuer $TEST_OP2; audience urn:test:api; }
oauth2_on_failure 401;
--- config
location /api/ {
    oauth2_auth corp partners;
    add_header X-Provider $oauth2_provider always;
    add_header X-Error $oauth2_error always;
    empty_gif;
}
location /partners/ { oauth2_auth partners; add_header X-Error $oauth2_error always; empty_gif; }
--- test
my $r = http_get('/api/x', bearer(token()));
is($r->{status}, 200, 'a token of the first provider');
is($r->{headers}{'x-provider'}, 'corp', '$oauth2_provider corp');
$r = http_get('/api/x', bearer(token2()));
is($r->{status}, 200, 'a token of the second provider');
is($r->{headers}{'x-provider'}, 'partners', '$oauth2_provider partners');
$r = http_get('/api/x', bearer(token2()));
is($r->{headers}{'x-provider'}, 'partners', 'and from the cache');
$r = http_get('/api/x', bearer(mint('{"claims":{"iss":"' . op2_url() . '"}}')));
is($r->{status}, 401, "signed by the first provider's key but naming the second's issuer: 401");
$r = http_get('/api/x', bearer(mint('{"claims":{"iss":"https://elsewhere.example"}}')));
is($r->{status}, 401, 'naming no listed issuer: 401');
like($r->{headers}{'www-authenticate'} // '', qr/error="invalid_token"/, 'invalid_token');
is($r->{headers}{'x-error'}, 'wrong_issuer', 'wrong_issuer');
$r = http_get('/api/x', bearer(token(resource => 'urn:test:opaque')));
is($r->{status}, 200, 'an opaque token: introspected at the first provider that can');
is($r->{headers}{'x-provider'}, 'corp', 'corp');
is(http_get('/partners/x', bearer(token()))->{status}, 401, "the first provider's token where only the second is listed: 401");

=== TEST 7: one callback for every provider; sessions bound to theirs; sign-out at its own provider
--- http_config
oauth2_cookie_secret_file $TEST_ROOT/cookie.keys;
oauth2_cookie_secure off;
oauth2_provider corp { issuer $TEST_OP; client_id nginx; client_secret nginx-secret; }
oauth2_provider partners { issuer $TEST_OP2; client_id nginx; client_secret nginx-secret; }
--- config
location /a/ { oauth2_auth corp; add_header X-Provider $oauth2_provider always; add_header X-Sub $oauth2_sub always; empty_gif; }
location /b/ { oauth2_auth partners; add_header X-Provider $oauth2_provider always; add_header X-Sub $oauth2_sub always; empty_gif; }
location /a-api/ { oauth2_auth corp; oauth2_on_failure 401; empty_gif; }
location /b-api/ { oauth2_auth partners; oauth2_on_failure 401; empty_gif; }
location /ab/ { oauth2_auth partners corp; oauth2_on_failure 401; add_header X-Provider $oauth2_provider always; empty_gif; }
location = /oauth2/callback { oauth2_callback; }
location = /oauth2/sign_out { oauth2_sign_out; }
--- test
my $base = "http://127.0.0.1:" . nginx_port();
my $ba = browser();
my $r = $ba->get("$base/a/", { accept => 'text/html' });
like($r->{headers}{location}, qr{^\Q${\ op_url()}\E/}, '/a/ logs in at the first provider');
is($ba->login("$base/a/")->{status}, 302, 'logged in through the shared callback');
$r = $ba->get("$base/a/x");
is($r->{headers}{'x-provider'}, 'corp', 'a session of corp');
is($r->{headers}{'x-sub'}, 'alice', 'as alice');
is($ba->get("$base/b-api/x")->{status}, 401, 'the corp session at a partners-only location: as if absent');
is($ba->get("$base/ab/x")->{headers}{'x-provider'}, 'corp', 'at a location listing both: corp');
is($ba->get("$base/a/y")->{status}, 200, 'and still works at corp (not cleared)');
# a second browser logs in at the second provider
my $bb = OAuth2Browser->new(op => op2_url(), base => $base);
$r = $bb->get("$base/b/", { accept => 'text/html' });
like($r->{headers}{location}, qr{^\Q${\ op2_url()}\E/}, '/b/ logs in at the second provider');
is($bb->login("$base/b/", 'bob')->{status}, 302, 'logged in through the same callback');
$r = $bb->get("$base/b/x");
is($r->{headers}{'x-provider'}, 'partners', 'a session of partners');
is($r->{headers}{'x-sub'}, 'bob', 'as bob');
is($bb->get("$base/a-api/x")->{status}, 401, 'not at a corp-only location');
# sign-out goes to each session's own provider
like($ba->get("$base/oauth2/sign_out")->{headers}{location}, qr{^\Q${\ op_url()}\E/session/end}, 'corp session: sign-out at the first provider');
like($bb->get("$base/oauth2/sign_out")->{headers}{location}, qr{^\Q${\ op2_url()}\E/session/end}, 'partners session: sign-out at the second provider');
