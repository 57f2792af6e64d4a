// Mint N distinct, valid access tokens with the test provider's own keys
// (read from its state directory), one per line, for the cache-miss
// benchmark: node bench/mint.mjs STATE_DIR ISSUER N [RS256|ES256]
import fs from 'node:fs';
import crypto from 'node:crypto';

const [stateDir, issuer, n, alg = 'RS256'] = process.argv.slice(2);
const { jwks } = JSON.parse(fs.readFileSync(`${stateDir}/keys.json`, 'utf8'));
const jwk = jwks.find((k) => k.kty === (alg === 'ES256' ? 'EC' : 'RSA'));
const key = crypto.createPrivateKey({ key: jwk, format: 'jwk' });
const b64u = (b) => Buffer.from(b).toString('base64url');
const header = b64u(JSON.stringify({ alg, typ: 'at+jwt', kid: jwk.kid }));
const now = Math.floor(Date.now() / 1000);
const out = [];
for (let i = 0; i < Number(n); i += 1) {
  const claims = b64u(JSON.stringify({
    iss: issuer, sub: `user-${i}`, aud: 'urn:test:api', iat: now, exp: now + 7200,
    client_id: 'api-client', scope: 'api:read', jti: crypto.randomBytes(8).toString('hex'),
  }));
  const input = `${header}.${claims}`;
  const sig = alg === 'ES256'
    ? crypto.sign('sha256', Buffer.from(input), { key, dsaEncoding: 'ieee-p1363' })
    : crypto.sign('sha256', Buffer.from(input), key);
  out.push(`${input}.${b64u(sig)}`);
}
process.stdout.write(`${out.join('\n')}\n`);
