# oauth2_status: JSON and the Prometheus text format (read by a real parser,
# Debian's python3-prometheus-client), every figure summed over two workers,
# the provider's state following the provider, figures kept across a
# reload, and ordinary nginx access rules in front of the endpoint.
use strict;
use warnings;
use lib 't/lib';
use OAuth2Test;
use JSON::PP;
use File::Temp qw(tempfile);

my $port = fixed_port();
op_start(redirect_uri => ["http://127.0.0.1:$port/oauth2/callback"]);
write_cookie_keys('cookie.keys', 's');
run_tests();

# the exposition text parsed by prometheus_client: { "name{label=v,...}" => value }
sub prom {
    my $text = http_get('/status?format=prometheus')->{content};
    my ($fh, $file) = tempfile();
    print $fh $text;
    close $fh;
    my $py = <<'PY';
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = {}
for fam in text_string_to_metric_families(open(sys.argv[1]).read()):
    for s in fam.samples:
        labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
        out[s.name + ("{" + labels + "}" if labels else "")] = s.value
print(json.dumps(out))
PY
    my $json = `/usr/bin/python3 -c '$py' '$file' 2>&1`;
    unlink $file;
    my $m = eval { decode_json($json) } or die "the Prometheus parser refused the output: $json\n";
    return $m;
}

# send N requests, each on a new connection (spread over the workers)
sub hits {
    my ($n, $path, $headers) = @_;
    my %codes;
    for (1 .. $n) {
        my $r = HTTP::Tiny->new(keep_alive => 0, max_redirect => 0)->get("http://127.0.0.1:" . nginx_port() . $path, { headers => $headers // {} });
        $codes{ $r->{status} }++;
    }
    return \%codes;
}

__DATA__

=== TEST 1: counts after known traffic, two workers, both formats; the provider's state; figures across a reload
--- workers
2
--- http_config
oauth2_issuer $TEST_OP;
oauth2_client_id nginx;
oauth2_client_secret nginx-secret;
oauth2_audience urn:test:api;
oauth2_cookie_secret_file $TEST_ROOT/cookie.keys;
oauth2_cookie_secure off;
oauth2_jwks_refresh 1s;
--- config
location /api/ { oauth2_auth on; oauth2_on_failure 401; empty_gif; }
location /scoped/ { oauth2_auth on; oauth2_on_failure 401; oauth2_require_scope admin; empty_gif; }
location /app/ { oauth2_auth on; empty_gif; }
location = /status { oauth2_status; }
location = /oauth2/callback { oauth2_callback; }
--- test
my $t = token();
my $p = op_url();
my %want = (allowed => 7, unauthenticated => 5, forbidden => 2, redirected => 3);
my $c = main::hits(7, '/api/x', { Authorization => "Bearer $t" });
is($c->{200}, 7, '7 allowed');
$c = main::hits(3, '/api/x');
is($c->{401}, 3, '3 without a token');
$c = main::hits(2, '/api/x', { Authorization => 'Bearer ' . mint('{"tamper":true}') });
is($c->{401}, 2, '2 with a bad signature');
$c = main::hits(2, '/scoped/x', { Authorization => "Bearer $t" });
is($c->{403}, 2, '2 refused by a rule');
$c = main::hits(3, '/app/x', { Accept => 'text/html' });
is($c->{302}, 3, '3 redirected to the provider');
my $m = main::prom();
for my $r (sort keys %want) {
    is($m->{"nginx_oauth2_requests_total{provider=$p,result=$r}"}, $want{$r}, "requests_total $r = $want{$r}");
}
is($m->{"nginx_oauth2_refusals_total{provider=$p,reason=missing_token}"}, 3 + 3, 'refusals: missing_token (401s and redirects)');
is($m->{"nginx_oauth2_refusals_total{provider=$p,reason=bad_signature}"}, 2, 'refusals: bad_signature');
is($m->{"nginx_oauth2_refusals_total{provider=$p,reason=insufficient_scope}"}, 2, 'refusals: insufficient_scope');
is($m->{'nginx_oauth2_logins_started_total'}, 3, 'logins started');
is($m->{'nginx_oauth2_workers'}, 2, 'two worker slots');
cmp_ok($m->{'nginx_oauth2_token_cache_hits_total'} + $m->{'nginx_oauth2_token_cache_misses_total'}, '==', 7 + 2 + 2, 'every bearer token was a hit or a miss');
cmp_ok($m->{'nginx_oauth2_token_cache_misses_total'}, '<=', 2 + 2 + 1, 'one miss per worker for the good token at most (+ the forged ones)');
is($m->{"nginx_oauth2_provider_up{provider=$p}"}, 1, 'the provider is up');
is($m->{"nginx_oauth2_provider_state{provider=$p,state=ready}"}, 1, 'state ready');
ok((grep { /^nginx_oauth2_provider_key_age_seconds\{kid=/ } keys %$m) >= 2, 'each key with its age');
my $j = decode_json(http_get('/status')->{content});
is($j->{providers}[0]{requests}{allowed}, 7, 'the JSON says the same');
is($j->{providers}[0]{state}, 'ready', 'JSON state');
is($j->{workers}, 2, 'JSON workers');
is(http_get('/status')->{headers}{'content-type'}, 'application/json', 'JSON by default');
like(http_get('/status?format=prometheus')->{headers}{'content-type'}, qr{^text/plain; version=0\.0\.4}, 'text format 0.0.4');

# the provider goes away: the key refetch fails, state failed; then back
op_stop();
my $state = '';
for (1 .. 40) {
    $state = decode_json(http_get('/status')->{content})->{providers}[0]{state};
    last if $state eq 'failed';
    sleep 0.25;
}
is($state, 'failed', 'the provider killed: failed');
cmp_ok(main::prom()->{"nginx_oauth2_provider_consecutive_failures{provider=$p}"}, '>=', 1, 'consecutive failures counted');
op_start();
for (1 .. 60) {
    $state = decode_json(http_get('/status')->{content})->{providers}[0]{state};
    last if $state eq 'ready';
    sleep 0.25;
}
is($state, 'ready', 'back: ready');

# a reload keeps the figures
nginx_reload();
sleep 1;
main::hits(1, '/api/x', { Authorization => "Bearer $t" });
$m = main::prom();
is($m->{"nginx_oauth2_requests_total{provider=$p,result=allowed}"}, 8, 'after a reload: the old figures plus the new request');
is(http_get('/api/x', { Authorization => "Bearer $t" })->{status}, 200, 'still serving');
--- no_error_log
[error] oauth2: internal

=== TEST 2: the example alert rules and scrape config name metrics the endpoint has
--- http_config
oauth2_issuer $TEST_OP;
oauth2_audience urn:test:api;
--- config
location = /oauth2/status { oauth2_status; }
location /api/ { oauth2_auth on; oauth2_on_failure 401; empty_gif; }
--- test
is(http_get('/api/x', { Authorization => 'Bearer ' . token() })->{status}, 200, 'keys loaded');
my $text = http_get('/oauth2/status?format=prometheus')->{content};
my $py = <<'PY';
import json, re, sys, yaml
rules = yaml.safe_load(open("nginx-conf/prometheus/oauth2-alerts.yml"))
scrape = yaml.safe_load(open("nginx-conf/prometheus/scrape.yml"))
names = sorted({m for g in rules["groups"] for r in g["rules"] for m in re.findall(r"nginx_oauth2_\w+", r["expr"])})
print(json.dumps({"names": names, "alerts": [r["alert"] for g in rules["groups"] for r in g["rules"]],
                  "path": scrape["scrape_configs"][0]["metrics_path"], "params": scrape["scrape_configs"][0]["params"]}))
PY
my $out = decode_json(`/usr/bin/python3 -c '$py'`);
is(scalar @{ $out->{alerts} }, 2, 'two alert rules');
ok(scalar @{ $out->{names} } >= 2, 'naming metrics');
like($text, qr/^$_[{ ]/m, "$_ is in the endpoint's output") for @{ $out->{names} };
is($out->{path}, '/oauth2/status', 'the scrape path');
is_deeply($out->{params}, { format => ['prometheus'] }, 'asks for the text format');

=== TEST 3: nginx access rules guard the endpoint; its own requests are not counted
--- config
location = /status { allow 10.255.255.1; deny all; oauth2_status; }
location = /open-status { oauth2_status; }
--- test
is(http_get('/status')->{status}, 403, 'deny all: 403');
my $j = decode_json(http_get('/open-status')->{content});
is(scalar @{ $j->{providers} }, 0, 'no provider configured: none listed');
is($j->{totals}{token_cache_hits_total}, 0, 'nothing counted');
is(http_get('/open-status', {}, 'POST')->{status}, 405, 'GET and HEAD only');
