package OAuth2Test;

# The project's small Test::Nginx-style harness: data-driven blocks parsed by
# Test::Base, nginx started on a free loopback port for each block, the real
# OpenID Provider (t/op/op.mjs, panva/oidc-provider) started once per file
# when the file asks for it, everything stopped at the end even on failure.
#
# Block sections:
#   --- main_config      text at the top level of nginx.conf
#   --- http_config      text inside http {}, before the server
#   --- config           text inside the test server {}
#   --- must_die         `nginx -t` must fail (checks --- error_log against its output)
#   --- request          "GET /path" (one request)
#   --- more_headers     "Name: value" lines (use `eval` for computed values)
#   --- raw_request      a raw HTTP request sent as is (eval-able)
#   --- error_code       expected status
#   --- response_headers "Name: value" exact, "Name: ~regex", "!Name" absent
#   --- response_body_like   regex
#   --- error_log        lines that must appear in the error log
#   --- no_error_log     lines that must not appear
#   --- setup            perl code run before nginx starts
#   --- test             perl code run after nginx starts (eval-able helpers)
#   --- wait             seconds to sleep before checking the error log
#   --- workers          worker_processes (default 1)
# Every block also fails on [alert], [crit], [emerg] or a worker that died
# (--- allow_alert lets the panic-guard test have its one expected alert).
#
# In config text, $TEST_OP, $TEST_OP2 (the second provider, op2_start),
# $TEST_PORT, $TEST_PORT2 (a second free port),
# $TEST_ROOT and $TEST_DIR are replaced.

use strict;
use warnings;
use Test::Base;
use Exporter ();
use IO::Socket::INET;
use HTTP::Tiny;
use MIME::Base64 ();
use File::Path qw(make_path remove_tree);
use File::Basename qw(dirname);
use Cwd qw(abs_path);
use POSIX qw(:sys_wait_h);
use Time::HiRes qw(sleep time);

our @EXPORT = qw(run_tests op_start op_stop op_url op_port op_ctl token mint
                 http_get nginx_port nginx_reload error_log_text raw_http
                 is_status worker_pids op_reserve servroot fixed_port browser
                 write_cookie_keys make_tls nginx_t_text op2_start op2_url nginx_port2
                 op2_ctl token2 mint2 op_stat op_fault bearer
                 redis_start redis_stop redis_signal redis_cli redis_port fixed_port2
                 nginx2_start dpop_proof make_client_cert logout_at_provider
                 spawn stop_process);

sub import {
    my $caller = caller;
    no strict 'refs';
    *{"${caller}::$_"} = \&{"OAuth2Test::$_"} for @EXPORT;
}

my $TOP = abs_path(dirname(__FILE__) . '/../..');
# the module's test hooks (request headers that make it fail on purpose) are
# on in workers that get this variable (the config passes it with "env")
$ENV{NGX_OAUTH2_TEST_HOOKS} = 1;
my ($NGINX, $MODULE) = find_binaries();
my $ROOT = "$TOP/t/servroot-" . ($ENV{TEST_NGINX_SERVROOT_SUFFIX} // $$);
my ($op_pid, $op_port, $op_state);
my ($op2_pid, $op2_port);
my ($ngx_pid, $ngx_port, $ngx_port2, $fixed_port, $fixed_port2);
my ($redis_pid, $redis_port, $ngx2_pid);

# fixed_port(): one nginx port for every block of the file (the provider
# must know the redirect URI before nginx starts).
sub fixed_port { $fixed_port //= free_port() }
# fixed_port2(): the second nginx of a fleet (nginx2_start), likewise fixed
sub fixed_port2 { $fixed_port2 //= free_port() }

# spawn($what, $log, $port, $seconds, @cmd): run @cmd with its output
# appended to $log; wait up to $seconds for it to listen on $port (dies if it
# exits or does not). Returns its pid.
sub spawn {
    my ($what, $log, $port, $seconds, @cmd) = @_;
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        open STDOUT, '>>', $log;
        open STDERR, '>&', \*STDOUT;
        exec @cmd or exit 127;
    }
    my $until = time + $seconds;
    while (time < $until) {
        return $pid if port_open($port);
        die "$what exited at start (see $log)\n" if waitpid($pid, WNOHANG) > 0;
        sleep 0.025;
    }
    die "$what did not start on port $port (see $log)\n";
}

# stop_process($pid, $signal): ask it to end, wait up to 5 s, then kill it
sub stop_process {
    my ($pid, $signal) = @_;
    kill $signal, $pid;
    for (1 .. 200) { last if waitpid($pid, WNOHANG) != 0; sleep 0.025 }
    if (kill 0, $pid) {
        kill 'KILL', $pid;
        waitpid($pid, 0);
    }
}

# redis_start(): Debian's redis-server on 127.0.0.1 (a port of its own,
# kept across restarts; no persistence: a restart loses every record)
sub redis_start {
    $redis_port //= free_port();
    make_path("$ROOT/redis");
    $redis_pid = spawn('redis-server', "$ROOT/redis.log", $redis_port, 5,
        'redis-server', '--port', $redis_port, '--bind', '127.0.0.1', '--save', '',
        '--appendonly', 'no', '--dir', "$ROOT/redis", '--daemonize', 'no');
    return 1;
}

# redis_port(): the port (chosen at once, Redis need not run: down at start)
sub redis_port { $redis_port //= free_port() }

sub redis_stop {
    return unless $redis_pid;
    kill 'CONT', $redis_pid;
    kill 'KILL', $redis_pid;
    waitpid($redis_pid, 0);
    undef $redis_pid;
}

# redis_signal('STOP' | 'CONT'): pause or resume the server
sub redis_signal { kill $_[0], $redis_pid if $redis_pid }

# redis_cli(ARGS...): the output of redis-cli against the test server
sub redis_cli {
    my @cmd = ('redis-cli', '-h', '127.0.0.1', '-p', redis_port(), @_);
    open my $f, '-|', @cmd or die "redis-cli: $!";
    local $/;
    my $out = <$f> // '';
    close $f;
    return $out;
}

# nginx2_start(): a second nginx (prefix servroot/n2, port fixed_port2())
# with the block's configuration: a fleet of two sharing one store
sub nginx2_start {
    my $conf = do { local $/; open my $f, '<', "$ROOT/conf/nginx.conf" or die $!; <$f> };
    my $p2 = fixed_port2();
    $conf =~ s/listen 127\.0\.0\.1:$ngx_port;/listen 127.0.0.1:$p2;/;
    make_path("$ROOT/n2/conf", "$ROOT/n2/logs", "$ROOT/n2/html");
    open my $o, '>', "$ROOT/n2/conf/nginx.conf" or die $!;
    print $o $conf;
    close $o;
    $ngx2_pid = spawn('the second nginx', "$ROOT/n2/logs/stderr.log", $p2, 5,
        $NGINX, '-p', "$ROOT/n2/", '-c', 'conf/nginx.conf');
    return 1;
}

sub nginx2_stop {
    return unless $ngx2_pid;
    stop_process($ngx2_pid, 'QUIT');
    undef $ngx2_pid;
}

# Export the helpers into Test::Base's eval filter package too.
{
    no strict 'refs';
    for my $f (@EXPORT) {
        *{"Test::Base::Filter::$f"} = \&{$f};
    }
}

sub find_binaries {
    my $nginx = $ENV{TEST_NGINX_BINARY};
    my $module = $ENV{TEST_NGINX_MODULE};
    my $profile = $ENV{TEST_PROFILE} // 'debug';
    if (!$nginx) {
        my @c = sort { -M $a <=> -M $b } glob("$TOP/target/$profile/build/nginx-sys-*/out/objs/nginx");
        $nginx = $c[0];
    }
    $module //= "$TOP/target/$profile/libngx_http_oauth2_module.so";
    die "nginx binary not found (build first: make build)\n" unless $nginx && -x $nginx;
    die "module not found at $module (build first: make build)\n" unless -f $module;
    return ($nginx, $module);
}

sub free_port {
    my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                                  Proto => 'tcp', Listen => 1, ReuseAddr => 1)
        or die "cannot get a free port: $!";
    my $p = $s->sockport;
    close $s;
    return $p;
}

sub port_open {
    my ($port) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                                  Proto => 'tcp', Timeout => 1);
    return 0 unless $s;
    close $s;
    return 1;
}

# ---- the OpenID Provider -------------------------------------------------

sub op_port { $op_port }
sub op_url { "http://127.0.0.1:$op_port" }

# op_start(%opts): start (or restart, same port and keys) the test OP.
# opts: redirect_uri => [..], access_ttl => N, jwks_delay => ms, port => N,
#       no_logout => 1, conform => 1 (scope claims from UserInfo only)
sub op_start {
    my %o = @_;
    $op_port //= $o{port} // free_port();
    $op_state //= "$ROOT/op";
    make_path($op_state);
    my @args = ('node', "$TOP/t/op/op.mjs", '--port', $op_port, '--state', $op_state);
    push @args, '--redirect-uri', $_ for @{ $o{redirect_uri} || [] };
    push @args, '--access-ttl', $o{access_ttl} if $o{access_ttl};
    push @args, '--jwks-delay', $o{jwks_delay} if $o{jwks_delay};
    push @args, '--no-logout' if $o{no_logout};
    push @args, '--conform' if $o{conform};
    push @args, '--backchannel-uri', $o{backchannel_uri} if $o{backchannel_uri};
    $op_pid = spawn('the test OP', "$ROOT/op.log", $op_port, 10, @args);
    return 1;
}

# op_reserve(): choose the OP port without starting it (provider down at start)
sub op_reserve { $op_port //= free_port(); $op_state //= "$ROOT/op"; $op_port }

# op2_start(%opts): a second, independent provider (another issuer, other
# keys) for multi-provider tests; the same options as op_start.
sub op2_start {
    my %o = @_;
    $op2_port //= free_port();
    make_path("$ROOT/op2");
    my @args = ('node', "$TOP/t/op/op.mjs", '--port', $op2_port, '--state', "$ROOT/op2");
    push @args, '--redirect-uri', $_ for @{ $o{redirect_uri} || [] };
    push @args, '--access-ttl', $o{access_ttl} if $o{access_ttl};
    $op2_pid = spawn('the second test OP', "$ROOT/op2.log", $op2_port, 10, @args);
    return 1;
}

sub op2_url { "http://127.0.0.1:$op2_port" }

sub op2_stop {
    return unless $op2_pid;
    stop_process($op2_pid, 'TERM');
    undef $op2_pid;
}

sub op_stop {
    return unless $op_pid;
    stop_process($op_pid, 'TERM');
    undef $op_pid;
    for (1 .. 100) { last unless port_open($op_port); sleep 0.05 }
}

my $http = HTTP::Tiny->new(max_redirect => 0, timeout => 30);

sub op2_ctl { op_ctl($_[0], $_[1], op2_url()) }

# op_stat($path, $base): how often the provider at $base (the first one by
# default) has served $path (its /__test/stats)
sub op_stat {
    my ($path, $base) = @_;
    my $s = $http->get(($base // op_url()) . '/__test/stats')->{content} // '';
    return ($s =~ /"\Q$path\E":(\d+)/)[0] // 0;
}

# op_fault($json): make the first provider misbehave (see t/op/op.mjs)
sub op_fault { op_ctl('/__test/fault', $_[0]) }

# bearer($token): the request header of a bearer token
sub bearer { { Authorization => "Bearer $_[0]" } }

sub op_ctl {
    my ($path, $body, $base) = @_;
    my $r = $http->request('POST', ($base // op_url()) . $path,
                           { content => $body // '{}', headers => { 'content-type' => 'application/json' } });
    die "OP $path: $r->{status} $r->{content}\n" unless $r->{success};
    return $r->{content};
}

# token(%opts): a real access token from the provider's client_credentials
# grant (headers => { dpop => PROOF } for a DPoP-bound one).
sub token {
    my %o = @_;
    my $client = $o{client} // 'api-client';
    my $secret = $o{secret} // 'api-secret';
    my $form = { grant_type => 'client_credentials', scope => $o{scope} // 'api:read' };
    $form->{resource} = $o{resource} if $o{resource};
    my $r = $http->post_form(($o{base} // op_url()) . '/token', $form,
        { headers => { authorization => 'Basic ' . b64("$client:$secret"), %{ $o{headers} || {} } } });
    die "token request failed: $r->{status} $r->{content}\n" unless $r->{success};
    my ($t) = $r->{content} =~ /"access_token":"([^"]+)"/ or die "no access_token in $r->{content}\n";
    return $t;
}

# dpop_proof(%body): a DPoP proof as a client makes one (t/op/op.mjs dpopProof)
sub dpop_proof {
    my %b = @_;
    require JSON::PP;
    op_ctl('/__test/dpop', JSON::PP->new->canonical->encode(\%b));
}

# mint(json): a crafted JWT from the OP's helper (see t/op/op.mjs).
sub mint { op_ctl('/__test/mint', $_[0] // '{}') }
# token2 / mint2: the same from the second provider
sub token2 { token(@_, base => op2_url()) }
sub mint2 { op_ctl('/__test/mint', $_[0] // '{}', op2_url()) }

sub b64 {
    require MIME::Base64;
    return MIME::Base64::encode_base64($_[0], '');
}

# ---- nginx ---------------------------------------------------------------

sub nginx_port { $ngx_port }
sub nginx_port2 { $ngx_port2 }

# write_cookie_keys($file, @chars): a key file in the servroot, one key of
# 32 times each char per line (the first seals).
sub write_cookie_keys {
    my ($file, @chars) = @_;
    make_path($ROOT);
    open my $f, '>', "$ROOT/$file" or die "$ROOT/$file: $!";
    print $f "# cookie keys for the tests\n", map { MIME::Base64::encode_base64($_ x 32, '') . "\n" } @chars;
    close $f;
}

# make_tls(): a test CA (ca.crt) and a server certificate for 127.0.0.1
# signed by it (tls.crt, tls.key) in the servroot.
sub make_tls {
    my $sh = <<"SH";
cd '$ROOT'
openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 2 -subj /CN=test-ca -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign
openssl req -newkey rsa:2048 -nodes -keyout tls.key -out tls.csr -subj /CN=127.0.0.1
printf 'subjectAltName=IP:127.0.0.1\\nbasicConstraints=CA:FALSE\\nextendedKeyUsage=serverAuth\\n' > ext.cnf
openssl x509 -req -in tls.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out tls.crt -days 2 -extfile ext.cnf
SH
    system("($sh) >/dev/null 2>&1") == 0 or die "openssl failed\n";
}

# logout_at_provider($browser): the provider's own logout page (RP-Initiated
# Logout at the provider, not through nginx), confirmed; the provider then
# POSTs a logout token to every client of that session with a back-channel
# URI. Returns the confirmation's response.
sub logout_at_provider {
    my ($b) = @_;
    my $r = $b->get(op_url() . '/session/end', { accept => 'text/html' });
    die "no logout page: $r->{status}\n" unless $r->{status} == 200;
    my ($action) = $r->{content} =~ /<form[^>]*action="([^"]*)"/;
    my ($xsrf) = $r->{content} =~ /name="xsrf" value="([^"]*)"/;
    die "no logout form\n" unless $action && $xsrf;
    return $b->request('POST', OAuth2Browser::absolute(op_url() . '/', $action),
        { accept => 'text/html' }, "xsrf=$xsrf&logout=yes");
}

# make_client_cert(NAME): a self-signed client certificate and its key
# (NAME.crt, NAME.key in the servroot), for certificate-bound tokens
sub make_client_cert {
    my ($name) = @_;
    system("cd '$ROOT' && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
        . "-keyout $name.key -out $name.crt -days 2 -subj /CN=$name >/dev/null 2>&1") == 0
        or die "openssl failed\n";
    return ("$ROOT/$name.crt", "$ROOT/$name.key");
}

sub browser {
    require OAuth2Browser;
    return OAuth2Browser->new(op => op_url(), base => "http://127.0.0.1:$ngx_port");
}
sub servroot { $ROOT }

sub subst {
    my ($text) = @_;
    return '' unless defined $text;
    my $op = $op_port ? op_url() : 'http://127.0.0.1:1';
    my $op2 = $op2_port ? op2_url() : 'http://127.0.0.1:2';
    $text =~ s/\$TEST_OP2\b/$op2/g;
    $text =~ s/\$TEST_OP\b/$op/g;
    $text =~ s/\$TEST_PORT2\b/$ngx_port2/g;
    $text =~ s/\$TEST_PORT\b/$ngx_port/g;
    $text =~ s/\$TEST_ROOT\b/$ROOT/g;
    $text =~ s/\$TEST_REDIS\b/"redis:\/\/127.0.0.1:" . redis_port()/ge;
    $text =~ s/\$TEST_DIR\b/$TOP\/t/g;
    return $text;
}

sub write_conf {
    my ($block) = @_;
    make_path("$ROOT/conf", "$ROOT/logs", "$ROOT/html");
    my $main = subst($block->main_config);
    my $httpc = subst($block->http_config);
    my $conf = subst($block->config);
    my $workers = defined $block->workers ? (lines($block->workers))[0] : 1;
    # as root, workers would run as "nobody" and could not read the servroot
    # of a checkout in a private directory (static files of some tests)
    my $user = $> == 0 ? 'user root root;' : '';
    open my $f, '>', "$ROOT/conf/nginx.conf" or die $!;
    print $f <<"EOF";
load_module $MODULE;
env NGX_OAUTH2_TEST_HOOKS;
$user
daemon off;
master_process on;
worker_processes $workers;
error_log logs/error.log info;
pid logs/nginx.pid;
$main
events { worker_connections 1024; }
http {
    access_log logs/access.log;
    default_type text/plain;
$httpc
    server {
        listen 127.0.0.1:$ngx_port;
        server_name localhost;
$conf
    }
}
EOF
    close $f;
}

# nginx_t_text($conf): `nginx -t` of a whole configuration text (an example
# of nginx-conf/), with its load_module line pointed at the module under
# test; its relative paths are relative to $ROOT/ex/conf/. Returns (ok, output).
sub nginx_t_text {
    my ($text) = @_;
    make_path("$ROOT/ex/conf", "$ROOT/ex/logs");
    $text =~ s{^\s*load_module\s+\S+;}{load_module $MODULE;}m;
    open my $f, '>', "$ROOT/ex/conf/nginx.conf" or die $!;
    print $f $text;
    close $f;
    my $out = `'$NGINX' -t -p '$ROOT/ex/' -c conf/nginx.conf 2>&1`;
    return ($? == 0, $out);
}

sub nginx_test_config {
    my $out = `'$NGINX' -t -p '$ROOT/' -c conf/nginx.conf 2>&1`;
    my $ok = $? == 0;
    # an nginx built with --error-log-path=stderr (Debian's) words the lines
    # of -t as its error log does ("[emerg] PID#TID: ..."): one form for both
    $out =~ s/\[(\w+)\] \d+#\d+: (?:\*\d+ )?/[$1] /g;
    return ($ok, $out);
}

sub nginx_start {
    open my $t, '>', "$ROOT/logs/error.log"; close $t;
    $ngx_pid = fork // die "fork: $!";
    if ($ngx_pid == 0) {
        open STDOUT, '>>', "$ROOT/logs/stderr.log";
        open STDERR, '>&', \*STDOUT;
        my @cmd = ($NGINX, '-p', "$ROOT/", '-c', 'conf/nginx.conf');
        # TEST_NGINX_VALGRIND=1: master and workers under valgrind memcheck,
        # one log per process in logs/valgrind-PID.log (checked by check_log)
        unshift @cmd, 'valgrind', '--quiet', '--error-limit=no', '--num-callers=30',
            "--suppressions=$TOP/t/valgrind.supp", "--log-file=$ROOT/logs/valgrind-%p.log"
            if $ENV{TEST_NGINX_VALGRIND};
        exec @cmd or exit 127;
    }
    for (1 .. ($ENV{TEST_NGINX_VALGRIND} ? 2000 : 200)) {
        return 1 if port_open($ngx_port);
        if (waitpid($ngx_pid, WNOHANG) > 0) {
            undef $ngx_pid;
            return 0;
        }
        sleep 0.025;
    }
    return 0;
}

sub nginx_stop {
    return unless $ngx_pid;
    stop_process($ngx_pid, 'QUIT');
    undef $ngx_pid;
}

sub nginx_reload {
    kill 'HUP', $ngx_pid if $ngx_pid;
    sleep 0.5;
}

# the worker processes of the running nginx (waits for them to exist)
sub worker_pids {
    my @p;
    for (1 .. 400) {
        @p = `pgrep -P $ngx_pid`;
        chomp @p;
        last if @p;
        sleep 0.025;
    }
    return sort @p;
}

sub error_log_text {
    open my $f, '<', "$ROOT/logs/error.log" or return '';
    local $/;
    my $t = <$f>;
    return $t // '';
}

# http_get($path, \%headers, $method): HTTP::Tiny response hash.
sub http_get {
    my ($path, $headers, $method) = @_;
    return $http->request($method // 'GET', "http://127.0.0.1:$ngx_port$path",
                          { headers => $headers || {} });
}

# is_status($path, \%headers, $code, $name)
sub is_status {
    my ($path, $headers, $code, $name) = @_;
    my $r = http_get($path, $headers);
    Test::More::is($r->{status}, $code, $name // "$path -> $code")
        or Test::More::diag($r->{content});
    return $r;
}

# raw_http($bytes): send bytes as they are, return (status, whole response).
sub raw_http {
    my ($req) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $ngx_port,
                                  Proto => 'tcp', Timeout => 10) or die "connect: $!";
    print $s $req;
    local $/;
    my $resp = <$s> // '';
    close $s;
    my ($status) = $resp =~ m{^HTTP/1\.\d (\d{3})};
    return ($status // 0, $resp);
}

sub parse_headers {
    my ($text) = @_;
    my %h;
    for my $line (split /\n/, $text // '') {
        next unless $line =~ /\S/;
        my ($k, $v) = $line =~ /^\s*([^:]+?)\s*:\s*(.*?)\s*$/ or die "bad header line: $line\n";
        $h{$k} = $v;
    }
    return \%h;
}

sub lines { grep { /\S/ } map { s/^\s+|\s+$//gr } split /\n/, ($_[0] // '') }

sub check_log {
    my ($name, $log, $block) = @_;
    for my $l (lines($block->error_log)) {
        Test::More::ok(index($log, $l) >= 0, "$name - error log has: $l")
            or Test::More::diag(substr($log, -3000));
    }
    for my $l (lines($block->no_error_log)) {
        Test::More::ok(index($log, $l) < 0, "$name - error log lacks: $l");
    }
    my @bad = grep { /\[(alert|crit|emerg)\]|exited on signal/ } split /\n/, $log;
    if ($ENV{TEST_NGINX_VALGRIND}) {
        for my $vf (glob "$ROOT/logs/valgrind-*.log") {
            open my $v, '<', $vf or next;
            my $text = do { local $/; <$v> };
            close $v;
            unlink $vf;
            # an error report is a block of "==PID==" lines; keep those in which
            # a frame is in the module
            for my $err (split /\n==\d+== \n/, $text) {
                push @bad, "valgrind: $err" if $err =~ /libngx_http_oauth2_module/;
            }
        }
    }
    # a block that provokes the panic guard expects exactly that alert
    @bad = grep { !/\[alert\].*oauth2: internal error \(panic caught\)/ } @bad if defined $block->allow_alert;
    Test::More::ok(!@bad, "$name - no alert, crit, emerg or dead worker")
        or Test::More::diag(join("\n", @bad));
}

sub run_block {
    my ($block) = @_;
    my $name = $block->name;
    $ngx_port = $fixed_port // free_port();
    $ngx_port2 = $fixed_port2 // free_port();
    write_conf($block);
    if (defined $block->setup) {
        my $code = $block->setup;
        CORE::eval("package main; use Time::HiRes qw(sleep time); no strict; $code; 1") or die "setup of $name failed: $@";
    }

    if (defined $block->must_die) {
        my ($ok, $out) = nginx_test_config();
        Test::More::ok(!$ok, "$name - nginx -t fails");
        for my $l (lines($block->error_log)) {
            Test::More::ok(index($out, $l) >= 0, "$name - nginx -t says: $l") or Test::More::diag($out);
        }
        return;
    }

    if (!nginx_start()) {
        my $log = error_log_text();
        my $err = do { local $/; open my $f, '<', "$ROOT/logs/stderr.log"; <$f> } // '';
        Test::More::fail("$name - nginx starts");
        Test::More::diag("$err\n$log");
        return;
    }
    my $ok = eval {
        if (defined $block->request) {
            my ($method, $path) = split ' ', (lines($block->request))[0];
            my $hdrs = {};
            if (defined $block->more_headers) {
                for my $l (lines($block->more_headers)) {
                    my ($k, $v) = $l =~ /^([^:]+):\s*(.*)$/ or die "bad header: $l\n";
                    $hdrs->{$k} = $v;
                }
            }
            my $r = http_get($path, $hdrs, $method);
            check_response($name, $block, $r->{status}, $r->{headers}, $r->{content});
        }
        if (defined $block->raw_request) {
            my ($status, $resp) = raw_http($block->raw_request);
            my ($head, $body) = split /\r\n\r\n/, $resp, 2;
            my %h;
            for (split /\r\n/, $head // '') { $h{lc $1} = $2 if /^([^:]+):\s*(.*)$/ }
            check_response($name, $block, $status, \%h, $body);
        }
        if (defined $block->test) {
            my $code = $block->test;
            my @r = CORE::eval("package main; BEGIN { Test::More->import() } use Time::HiRes qw(sleep time); no strict; $code; 1");
            die "test code failed: $@" unless @r;
        }
        1;
    };
    Test::More::fail("$name - test code") or Test::More::diag($@) unless $ok;
    sleep($block->wait) if $block->wait;
    nginx2_stop();
    nginx_stop();
    my $log = error_log_text();
    my ($n) = $name =~ /(\d+)/;
    rename "$ROOT/logs/error.log", "$ROOT/logs/error-" . ($n // 'x') . ".log";
    check_log($name, $log, $block);
}

sub check_response {
    my ($name, $block, $status, $headers, $body) = @_;
    if (defined $block->error_code) {
        my $want = (lines($block->error_code))[0];
        Test::More::is($status, $want, "$name - status $want")
            or Test::More::diag(substr($body // '', 0, 500));
    }
    if (defined $block->response_headers) {
        for my $l (lines($block->response_headers)) {
            if ($l =~ /^!\s*(.+)$/) {
                Test::More::ok(!defined $headers->{lc $1}, "$name - no header $1");
                next;
            }
            my ($k, $v) = $l =~ /^([^:]+?)\s*:\s*(.*)$/ or die "bad header check: $l\n";
            my $got = $headers->{lc $k};
            $got = join(', ', @$got) if ref $got;
            if ($v =~ /^~\s*(.*)$/) {
                my $re = $1;
                Test::More::like($got // '', qr/$re/, "$name - header $k like /$re/");
            } else {
                Test::More::is($got, $v, "$name - header $k");
            }
        }
    }
    if (defined $block->response_body_like) {
        my $re = (lines($block->response_body_like))[0];
        Test::More::like($body // '', qr/$re/s, "$name - body like /$re/");
    }
}

sub run_tests {
    remove_tree("$ROOT/conf", "$ROOT/logs");
    make_path($ROOT);
    for my $block (Test::Base::blocks()) {
        run_block($block);
    }
    Test::More::done_testing();
}

END {
    local $?;   # waitpid below must not change the exit status
    nginx2_stop();
    nginx_stop();
    redis_stop();
    op_stop();
    op2_stop();
    # keep the directory of a failing file for inspection
    remove_tree($ROOT) if $ROOT && Test::More->builder->is_passing && !$ENV{TEST_KEEP_SERVROOT};
}

1;
