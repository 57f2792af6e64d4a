# HTTP/2: many streams of one connection parked at once while the keys load,
# one of them cancelled by the client while it waits (RST_STREAM), then the
# cached path and a session with an internal redirect, all on one HTTP/2
# connection (cleartext, prior knowledge; node's http2 client).
use strict;
use warnings;
use lib 't/lib';
use OAuth2Test;
use JSON::PP;

my $port = fixed_port();
op_start(redirect_uri => ["http://127.0.0.1:$port/oauth2/callback"]);
run_tests();

# run node's HTTP/2 client: N streams with the token, one more cancelled
# after CANCEL_MS; prints {"statuses":[...],"cancelled":bool}
sub h2 {
    my ($port, $token, $n, $cancel_ms) = @_;
    my $js = <<'JS';
const http2 = require('http2');
const [port, token, n, cancelMs] = process.argv.slice(2);
const s = http2.connect(`http://127.0.0.1:${port}`);
const statuses = [];
let open = Number(n) + 1, cancelled = false;
const done = () => { if (--open === 0) { s.close(); console.log(JSON.stringify({ statuses: statuses.sort(), cancelled })); } };
for (let i = 0; i < Number(n); i++) {
  const r = s.request({ ':path': `/api/${i}`, authorization: `Bearer ${token}` });
  r.on('response', (h) => statuses.push(h[':status']));
  r.on('data', () => {});
  r.on('close', done);
  r.end();
}
const c = s.request({ ':path': '/api/cancelled', authorization: `Bearer ${token}` });
c.on('response', () => {});
c.on('data', () => {});
c.on('error', () => {});
c.on('close', () => { cancelled = true; done(); });
c.end();
setTimeout(() => c.close(http2.constants.NGHTTP2_CANCEL), Number(cancelMs)).unref();
setTimeout(() => { console.log(JSON.stringify({ statuses, cancelled, timeout: true })); process.exit(1); }, 20000).unref();
JS
    my $file = servroot() . '/h2.cjs';
    open my $f, '>', $file or die "$file: $!";
    print $f $js;
    close $f;
    my $out = `node '$file' $port '$token' $n $cancel_ms 2>&1`;
    return eval { decode_json($out) } // die "the HTTP/2 client failed: $out\n";
}

__DATA__

=== TEST 1: ten streams parked while the keys load, one cancelled meanwhile; then cached
--- setup
op_ctl('/__test/delay', '{"jwks":1500}');
$main::tok = token();
--- http_config
oauth2_issuer $TEST_OP;
oauth2_audience urn:test:api;
oauth2_on_failure 401;
server {
    listen 127.0.0.1:$TEST_PORT2 http2;
    location /api/ { oauth2_auth on; add_header X-Sub $oauth2_sub always; empty_gif; }
}
--- config
location / { empty_gif; }
--- test
my $r = main::h2(nginx_port2(), $main::tok, 10, 300);
op_ctl('/__test/delay', '{"jwks":0}');
is_deeply($r->{statuses}, [(200) x 10], 'ten parked streams, each answered 200 once the keys came');
ok($r->{cancelled}, 'the cancelled stream went away');
ok(!$r->{timeout}, 'every stream ended (no client timeout)');
$r = main::h2(nginx_port2(), $main::tok, 10, 1000);
is_deeply($r->{statuses}, [(200) x 10], 'cached: ten streams at once');
ok(!$r->{timeout}, 'every stream ended');
is(http_get('/')->{status}, 200, 'the worker serves on');
--- no_error_log
[alert]
