// The test and demo OpenID Provider: panva/oidc-provider (OpenID Certified),
// configured for the module's tests and run on 127.0.0.1.
//
//   node t/op/op.mjs --port 9000 --state /tmp/op-state [--redirect-uri URI]...
//
// Keys live in STATE/keys.json (created on first start), so a provider that is
// stopped and started again on the same port serves the same keys.
//
// Besides the provider's own endpoints it serves a few test-only helpers under
// /__test/ (never part of any real provider):
//   POST /__test/mint    craft a JWT from the provider's own key (or a foreign
//                        one) to test how the module rejects bad tokens
//   POST /__test/rotate  add a new signing key in front of the old ones
//   POST /__test/delay   {"jwks": MS}: answer the key set late
//   POST /__test/fault   {"jwks":"garbage"|"empty", "token":500|"badjson", "delay":MS,
//                         "tokenDelay":MS (the token endpoint only),
//                         "introspectDelay":MS (the introspection endpoint only)}:
//                        misbehave (null or 0 clears a fault)
//   GET  /__test/stats   how often each endpoint was called
//   POST /__test/dpop    a DPoP proof as a client makes one (see dpopProof)
// --jwks-delay MS makes the key set answer late (requests must wait for it).
// --backchannel-uri URI registers client "nginx" for back-channel logout.
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import Provider from 'oidc-provider';

const args = process.argv.slice(2);
const opt = { port: 0, state: null, redirect: [] };
for (let i = 0; i < args.length; i += 1) {
  if (args[i] === '--port') opt.port = Number(args[++i]);
  else if (args[i] === '--state') opt.state = args[++i];
  else if (args[i] === '--redirect-uri') opt.redirect.push(args[++i]);
  else if (args[i] === '--access-ttl') opt.accessTtl = Number(args[++i]);
  else if (args[i] === '--jwks-delay') opt.jwksDelay = Number(args[++i]);
  else if (args[i] === '--no-logout') opt.noLogout = true;
  // OpenID Connect Back-Channel Logout 1.0: the provider POSTs logout
  // tokens to this URI of client "nginx" when a session at it ends
  else if (args[i] === '--backchannel-uri') opt.backchannel = args[++i];
  // claims of the scopes only from UserInfo, not in the ID token (as many
  // providers do): OpenID Connect Core §5.4
  else if (args[i] === '--conform') opt.conform = true;
  else { console.error(`unknown argument ${args[i]}`); process.exit(2); }
}
if (!opt.port || !opt.state) {
  console.error('usage: op.mjs --port PORT --state DIR [--redirect-uri URI]...');
  process.exit(2);
}
fs.mkdirSync(opt.state, { recursive: true });
const issuer = `http://127.0.0.1:${opt.port}`;

function newKey(kind) {
  const kid = crypto.randomBytes(8).toString('hex');
  const { privateKey } = kind === 'EC'
    ? crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' })
    : crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = privateKey.export({ format: 'jwk' });
  return { ...jwk, kid, use: 'sig', alg: kind === 'EC' ? 'ES256' : 'RS256' };
}

const keyFile = path.join(opt.state, 'keys.json');
let keys;
if (fs.existsSync(keyFile)) {
  keys = JSON.parse(fs.readFileSync(keyFile, 'utf8'));
} else {
  keys = { jwks: [newKey('RSA'), newKey('EC')], foreign: newKey('RSA') };
  fs.writeFileSync(keyFile, JSON.stringify(keys));
}

const stats = {};
// faults set by POST /__test/fault: {"jwks":"garbage"|"empty", "token":500|"badjson", "delay":MS, "tokenDelay":MS}
const faults = {};
const count = (name) => { stats[name] = (stats[name] || 0) + 1; };

function makeProvider() {
  const base = (id, secret) => ({
    client_id: id,
    client_secret: secret,
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    redirect_uris: opt.redirect.length ? opt.redirect : ['http://127.0.0.1/oauth2/callback'],
    post_logout_redirect_uris: opt.redirect.flatMap((u) => [new URL('/', u).href, new URL('/signed-out', u).href]),
    token_endpoint_auth_method: 'client_secret_basic',
    scope: 'openid email profile offline_access',
  });
  const clients = [
    {
      client_id: 'nginx',
      client_secret: 'nginx-secret',
      grant_types: ['authorization_code', 'refresh_token', 'client_credentials'],
      response_types: ['code'],
      redirect_uris: opt.redirect.length ? opt.redirect : [`http://127.0.0.1/oauth2/callback`],
      post_logout_redirect_uris: opt.redirect.flatMap((u) => [new URL('/', u).href, new URL('/signed-out', u).href]),
      token_endpoint_auth_method: 'client_secret_basic',
      scope: 'openid email profile offline_access api:read api:write',
      ...(opt.backchannel ? {
        backchannel_logout_uri: opt.backchannel,
        backchannel_logout_session_required: true,
      } : {}),
    },
    // a second client of the same provider (sessions are bound to theirs)
    { ...base('nginx-b', 'nginx-b-secret') },
    // ID tokens signed with HS256 and the client secret (OpenID Connect Core §10.1)
    {
      ...base('nginx-hs', 'nginx-hs-secret-0123456789abcdef0123456789abcdef'),
      id_token_signed_response_alg: 'HS256',
    },
    // certificate-bound tokens: client credentials with a client certificate
    {
      client_id: 'api-mtls',
      client_secret: 'api-mtls-secret',
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_basic',
      scope: 'api:read api:write',
      tls_client_certificate_bound_access_tokens: true,
    },
    {
      client_id: 'api-client',
      client_secret: 'api-secret',
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_basic',
      scope: 'api:read api:write',
    },
  ];
  const p = new Provider(issuer, {
    clients,
    jwks: { keys: keys.jwks },
    cookies: { keys: ['test-cookie-key-not-secret'] },
    scopes: ['openid', 'offline_access', 'email', 'profile', 'api:read', 'api:write'],
    pkce: { required: () => true },
    conformIdTokenClaims: Boolean(opt.conform),
    enabledJWA: { idTokenSigningAlgValues: ['RS256', 'PS256', 'ES256', 'EdDSA', 'HS256'] },
    findAccount: async (ctx, sub) => ({
      accountId: sub,
      // a user whose name starts with "big" has a 6 KB name: large ID tokens
      claims: async () => ({
        sub, email: `${sub}@example.test`, email_verified: true,
        name: sub.startsWith('big') ? `${sub}-${'N'.repeat(6000)}` : sub,
      }),
    }),
    claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'] },
    features: {
      devInteractions: { enabled: true },
      clientCredentials: { enabled: true },
      introspection: { enabled: true },
      revocation: { enabled: true },
      rpInitiatedLogout: { enabled: !opt.noLogout },
      backchannelLogout: { enabled: Boolean(opt.backchannel) },
      // DPoP-bound access tokens (RFC 9449): cnf.jkt in the JWT
      dPoP: { enabled: true },
      // certificate-bound access tokens (RFC 8705 §3): cnf.x5t#S256. The
      // provider runs on plain http in the tests: the client certificate
      // comes as a TLS terminator would pass it, in a header (base64 DER)
      mTLS: {
        enabled: true,
        certificateBoundAccessTokens: true,
        getCertificate(ctx) {
          const der = ctx.get('x-client-cert');
          if (!der) return undefined;
          return new crypto.X509Certificate(Buffer.from(der, 'base64'));
        },
      },
      resourceIndicators: {
        enabled: true,
        // the browser clients' logins get access tokens for UserInfo (as
        // oidc-provider and Entra ID do, a token for an API is not one for
        // UserInfo); client credentials get tokens for urn:test:api
        defaultResource: (ctx, client) => (client.clientId.startsWith('nginx') ? undefined : 'urn:test:api'),
        useGrantedResource: () => true,
        // urn:test:api (JWT, RS256), urn:test:api:es256 (JWT, ES256),
        // urn:test:opaque (opaque: introspection), urn:test:opaque:short (3 s)
        getResourceServerInfo: (ctx, resource) => {
          const opaque = resource.startsWith('urn:test:opaque');
          return {
            scope: 'api:read api:write',
            audience: resource,
            accessTokenTTL: resource.endsWith(':short') ? 3 : (opt.accessTtl || 300),
            accessTokenFormat: opaque ? 'opaque' : 'jwt',
            ...(opaque ? {} : { jwt: { sign: { alg: resource.endsWith(':es256') ? 'ES256' : 'RS256' } } }),
          };
        },
      },
    },
    ttl: {
      AccessToken: (ctx, token) => token.resourceServer?.accessTokenTTL || opt.accessTtl || 300,
      ClientCredentials: (ctx, token) => token.resourceServer?.accessTokenTTL || opt.accessTtl || 300,
    },
    // the back-channel logout POST goes to nginx on 127.0.0.1: without the
    // provider's guard against special-use addresses (a test on loopback)
    fetch: (url, options) => {
      const { dispatcher, ...rest } = options;
      return globalThis.fetch(url, rest);
    },
    // refresh tokens for every code grant of a client allowed to refresh
    issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
  });
  p.on('server_error', (ctx, err) => console.error('op server_error', err));
  p.on('backchannel.error', (ctx, err, client) => console.error('op backchannel.error', client.clientId, err.message));
  p.on('backchannel.success', (ctx, client) => console.log('op backchannel.success', client.clientId));
  return p;
}

let provider = makeProvider();

function b64u(buf) {
  return Buffer.from(buf).toString('base64url');
}

// Craft a JWT. body: { header: {...}, claims: {...}, key: 'op'|'op-ec'|'foreign'|
// 'none'|'hs256-public', tamper: bool }. Claims default to a valid access
// token for audience urn:test:api; a claim set to null is removed.
function mint(body) {
  const now = Math.floor(Date.now() / 1000);
  const keyName = body.key || 'op';
  const jwk = keyName === 'foreign' ? keys.foreign
    : keyName === 'op-ec' ? keys.jwks.find((k) => k.kty === 'EC')
      : keys.jwks.find((k) => k.kty === 'RSA');
  const alg = { op: 'RS256', 'op-ec': 'ES256', foreign: 'RS256', none: 'none', 'hs256-public': 'HS256' }[keyName];
  const header = { alg, typ: 'at+jwt', kid: jwk.kid, ...(body.header || {}) };
  const claims = {
    iss: issuer, sub: 'minted', aud: 'urn:test:api', iat: now, exp: now + 300,
    client_id: 'api-client', scope: 'api:read', ...(body.claims || {}),
  };
  for (const o of [header, claims]) for (const k of Object.keys(o)) if (o[k] === null) delete o[k];
  const input = `${body.raw_header || b64u(JSON.stringify(header))}.${body.raw_claims || b64u(JSON.stringify(claims))}`;
  let sig = '';
  if (keyName === 'none') {
    sig = '';
  } else if (keyName === 'hs256-public') {
    // the classic confusion attack: HMAC keyed with the RSA public key bytes
    const pub = crypto.createPublicKey({ key: jwk, format: 'jwk' }).export({ type: 'spki', format: 'pem' });
    sig = b64u(crypto.createHmac('sha256', pub).update(input).digest());
  } else {
    const key = crypto.createPrivateKey({ key: jwk, format: 'jwk' });
    const raw = alg === 'ES256'
      ? crypto.sign('sha256', Buffer.from(input), { key, dsaEncoding: 'ieee-p1363' })
      : crypto.sign('sha256', Buffer.from(input), key);
    sig = b64u(raw);
  }
  if (body.tamper) {
    const c = sig[5] === 'A' ? 'B' : 'A';
    sig = sig.slice(0, 5) + c + sig.slice(6);
  }
  return `${input}.${sig}`;
}

// DPoP proofs (RFC 9449) as a client makes them, to get DPoP-bound tokens
// from the provider's real token endpoint and to present them to nginx.
// body: { key: 'a'|'b', htm, htu, token (for ath), iat, jti, header: {...},
// claims: {...} (null removes), jwk: 'public'|'private'|'symmetric'|'b'
// (another key's), sign: 'own'|'b'|'none'|'hs256' }
const dpopKeys = {
  a: crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }),
  b: crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }),
};
function dpopProof(body) {
  const k = dpopKeys[body.key || 'a'];
  const pub = k.publicKey.export({ format: 'jwk' });
  const jwk = {
    public: pub,
    private: k.privateKey.export({ format: 'jwk' }),
    symmetric: { kty: 'oct', k: b64u(crypto.randomBytes(32)) },
    b: dpopKeys.b.publicKey.export({ format: 'jwk' }),
  }[body.jwk || 'public'];
  const sign = body.sign || 'own';
  const alg = { own: 'ES256', b: 'ES256', none: 'none', hs256: 'HS256' }[sign];
  const header = { typ: 'dpop+jwt', alg, jwk, ...(body.header || {}) };
  const claims = {
    jti: body.jti || crypto.randomBytes(12).toString('hex'),
    htm: body.htm || 'GET',
    htu: body.htu,
    iat: body.iat ?? Math.floor(Date.now() / 1000),
    ...(body.token ? { ath: b64u(crypto.createHash('sha256').update(body.token).digest()) } : {}),
    ...(body.claims || {}),
  };
  for (const o of [header, claims]) for (const key of Object.keys(o)) if (o[key] === null) delete o[key];
  const input = `${b64u(JSON.stringify(header))}.${b64u(JSON.stringify(claims))}`;
  let sig = '';
  if (sign === 'own' || sign === 'b') {
    const key = sign === 'own' ? k.privateKey : dpopKeys.b.privateKey;
    sig = b64u(crypto.sign('sha256', Buffer.from(input), { key, dsaEncoding: 'ieee-p1363' }));
  } else if (sign === 'hs256') {
    sig = b64u(crypto.createHmac('sha256', 'secret').update(input).digest());
  }
  return `${input}.${sig}`;
}

function readBody(req) {
  return new Promise((resolve) => {
    let data = '';
    req.on('data', (c) => { data += c; });
    req.on('end', () => resolve(data));
  });
}

const server = http.createServer(async (req, res) => {
  const url = new URL(req.url, issuer);
  count(url.pathname);
  if (url.pathname === '/__test/mint' && req.method === 'POST') {
    const body = JSON.parse((await readBody(req)) || '{}');
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end(mint(body));
    return;
  }
  if (url.pathname === '/__test/dpop' && req.method === 'POST') {
    const body = JSON.parse((await readBody(req)) || '{}');
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end(dpopProof(body));
    return;
  }
  if (url.pathname === '/__test/rotate' && req.method === 'POST') {
    keys.jwks.unshift(newKey('RSA'));
    fs.writeFileSync(keyFile, JSON.stringify(keys));
    provider = makeProvider();
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end(keys.jwks[0].kid);
    return;
  }
  if (url.pathname === '/__test/delay' && req.method === 'POST') {
    opt.jwksDelay = Number(JSON.parse((await readBody(req)) || '{}').jwks || 0);
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end(String(opt.jwksDelay));
    return;
  }
  if (url.pathname === '/__test/fault' && req.method === 'POST') {
    Object.assign(faults, JSON.parse((await readBody(req)) || '{}'));
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify(faults));
    return;
  }
  if (faults.delay) await new Promise((r) => { setTimeout(r, faults.delay); });
  if (url.pathname === '/token' && faults.tokenDelay) {
    await new Promise((r) => { setTimeout(r, faults.tokenDelay); });
  }
  if (url.pathname === '/token/introspection' && faults.introspectDelay) {
    await new Promise((r) => { setTimeout(r, faults.introspectDelay); });
  }
  if (url.pathname === '/jwks' && faults.jwks) {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(faults.jwks === 'empty' ? '{"keys":[]}' : 'this is not JSON {');
    return;
  }
  if (url.pathname === '/token' && faults.token) {
    if (faults.token === 'badjson') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{"access_token": ');
    } else {
      res.writeHead(Number(faults.token), { 'content-type': 'text/html' });
      res.end('<html>internal error</html>');
    }
    return;
  }
  if (url.pathname === '/__test/stats') {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify(stats));
    return;
  }
  if (url.pathname === '/jwks' && opt.jwksDelay) {
    await new Promise((r) => { setTimeout(r, opt.jwksDelay); });
  }
  provider.callback()(req, res);
});

server.listen(opt.port, '127.0.0.1', () => {
  console.log(`op ready ${issuer}`);
});
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0));
