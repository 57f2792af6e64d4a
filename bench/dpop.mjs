// The DPoP benchmark's client: a key of its own, a DPoP-bound access token
// from the provider's real token endpoint (client credentials, a proof of
// that key), then proofs for the benchmark's requests, each used once:
//   node bench/dpop.mjs OP_URL API_URL FILES N OUT_PREFIX
// writes OUT_PREFIX.token and OUT_PREFIX.1 .. OUT_PREFIX.FILES, N proofs each
// (a file per wrk run: a proof is never sent twice).
import fs from 'node:fs';
import crypto from 'node:crypto';

const [op, api, files, n, out] = process.argv.slice(2);
const b64u = (b) => Buffer.from(b).toString('base64url');
const { privateKey, publicKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
const jwk = publicKey.export({ format: 'jwk' });
const header = b64u(JSON.stringify({ typ: 'dpop+jwt', alg: 'ES256', jwk }));
function proof(htm, htu, token) {
  const claims = {
    jti: crypto.randomBytes(12).toString('hex'), htm, htu, iat: Math.floor(Date.now() / 1000),
    ...(token ? { ath: b64u(crypto.createHash('sha256').update(token).digest()) } : {}),
  };
  const input = `${header}.${b64u(JSON.stringify(claims))}`;
  return `${input}.${b64u(crypto.sign('sha256', Buffer.from(input), { key: privateKey, dsaEncoding: 'ieee-p1363' }))}`;
}
const res = await fetch(`${op}/token`, {
  method: 'POST',
  headers: {
    authorization: `Basic ${Buffer.from('api-client:api-secret').toString('base64')}`,
    'content-type': 'application/x-www-form-urlencoded',
    dpop: proof('POST', `${op}/token`),
  },
  body: new URLSearchParams({ grant_type: 'client_credentials', scope: 'api:read', resource: 'urn:test:api' }),
});
const body = await res.json();
if (!body.access_token || body.token_type !== 'DPoP') {
  console.error('no DPoP-bound token:', JSON.stringify(body));
  process.exit(1);
}
fs.writeFileSync(`${out}.token`, body.access_token);
for (let f = 1; f <= Number(files); f += 1) {
  const lines = [];
  for (let i = 0; i < Number(n); i += 1) lines.push(proof('GET', api, body.access_token));
  fs.writeFileSync(`${out}.${f}`, `${lines.join('\n')}\n`);
}
