# The Apache peers (Debian's apache2, libapache2-mod-oauth2,
# libapache2-mod-auth-openidc), for bench/run.sh. Source it after lib.sh and
# start_op (give start_op --redirect-uri "$(apache_redirect_uri)").
#   /ceiling/         no auth (Apache's own ceiling)
#   /mod_oauth2/      mod_oauth2, bearer JWT checked against the provider's jwks_uri
#   /openidc_bearer/  mod_auth_openidc as an OAuth 2.0 resource server (AuthType
#                     oauth20), the provider's RSA key as a PEM file: it takes
#                     only https for OIDCOAuthVerifyJwksUri
#   /app/             mod_auth_openidc browser login (AuthType openid-connect)
# One server process (event MPM, 64 threads), keep-alive on, the same 43-byte
# GIF everywhere (nginx's empty_gif answers the same bytes).

AP_PORT=${AP_PORT:-$(free_port)}
apache_redirect_uri() { echo "http://127.0.0.1:$AP_PORT/app/redirect_uri"; }

start_apache() {
    local root="$WORK/apache" m=/usr/lib/apache2/modules
    mkdir -p "$root/htdocs"
    printf 'GIF89a\x01\x00\x01\x00\x80\x01\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;' \
        > "$root/htdocs/pixel.gif"
    for d in ceiling mod_oauth2 openidc_bearer app; do
        mkdir -p "$root/htdocs/$d"
        cp "$root/htdocs/pixel.gif" "$root/htdocs/$d/"
    done
    node -e '
        const fs = require("fs"), crypto = require("crypto");
        const k = JSON.parse(fs.readFileSync(process.argv[1], "utf8")).jwks.find((k) => k.kty === "RSA");
        fs.writeFileSync(process.argv[2], crypto.createPublicKey({ key: { kty: k.kty, n: k.n, e: k.e }, format: "jwk" })
            .export({ type: "spki", format: "pem" }));
        console.log(k.kid);
    ' "$WORK/op/keys.json" "$root/op-rsa.pem" > "$root/op-rsa.kid"
    cat > "$root/httpd.conf" <<AEOF
ServerRoot "$root"
ServerName 127.0.0.1
PidFile $root/httpd.pid
Listen 127.0.0.1:$AP_PORT
LoadModule mpm_event_module $m/mod_mpm_event.so
LoadModule authz_core_module $m/mod_authz_core.so
LoadModule authn_core_module $m/mod_authn_core.so
LoadModule authz_user_module $m/mod_authz_user.so
LoadModule mime_module $m/mod_mime.so
LoadModule auth_openidc_module $m/mod_auth_openidc.so
LoadModule oauth2_module $m/mod_oauth2.so
ServerLimit 1
StartServers 1
MinSpareThreads 1
MaxSpareThreads 64
ThreadsPerChild 64
MaxRequestWorkers 64
MaxConnectionsPerChild 0
KeepAlive On
MaxKeepAliveRequests 0
ErrorLog $root/error.log
LogLevel warn
TypesConfig /etc/mime.types
DocumentRoot $root/htdocs
OIDCProviderMetadataURL $OP_URL/.well-known/openid-configuration
OIDCClientID nginx
OIDCClientSecret nginx-secret
OIDCRedirectURI $(apache_redirect_uri)
OIDCCryptoPassphrase $(head -c 24 /dev/urandom | base64)
OIDCScope "openid email"
OIDCPKCEMethod S256
OIDCSessionInactivityTimeout 3600
OIDCOAuthVerifyCertFiles $(cat "$root/op-rsa.kid")#$root/op-rsa.pem
<Location /mod_oauth2>
    AuthType oauth2
    OAuth2TokenVerify jwks_uri $OP_URL/jwks
    Require valid-user
</Location>
<Location /openidc_bearer>
    AuthType oauth20
    Require valid-user
</Location>
<Location /app>
    AuthType openid-connect
    Require valid-user
</Location>
AEOF
    /usr/sbin/apache2 -t -f "$root/httpd.conf" >&2
    /usr/sbin/apache2 -f "$root/httpd.conf" -DFOREGROUND 2>>"$root/stderr.log" &
    PIDS+=($!)
    wait_port "$AP_PORT"
}

# a mod_auth_openidc session cookie header value, from a browser login
get_apache_cookie() {
    perl -I"$TOP/t/lib" -MOAuth2Browser -e '
        my ($op, $base) = @ARGV;
        my $b = OAuth2Browser->new(op => $op);
        my $r = $b->login("$base/app/pixel.gif", "bench-user");
        die "Apache login failed: $r->{status}\n" unless $r->{status} == 302;
        print join("; ", map { "$_=" . $b->cookie($_) } grep { /^mod_auth_openidc_session/ } $b->cookie_names), "\n";
    ' "$OP_URL" "http://127.0.0.1:$AP_PORT"
}
