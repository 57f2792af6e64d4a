// Mint N distinct, valid access tokens, one per line, for the cache-miss and
// memory benchmarks:
//   node bench/mint.mjs STATE_DIR ISSUER N [RS256|ES256]  signed with the test
//                                       provider's own keys (its STATE_DIR)
//   node bench/mint.mjs KEY_FILE ISSUER N HS256          signed with the
//                                       base64url secret in KEY_FILE
import fs from 'node:fs';
import crypto from 'node:crypto';

const [source, issuer, n, alg = 'RS256'] = process.argv.slice(2);
const b64u = (b) => Buffer.from(b).toString('base64url');
let kid;
let sign;
if (alg === 'HS256') {
  const secret = Buffer.from(fs.readFileSync(source, 'utf8').trim(), 'base64url');
  kid = 'mem';
  sign = (input) => crypto.createHmac('sha256', secret).update(input).digest();
} else {
  const { jwks } = JSON.parse(fs.readFileSync(`${source}/keys.json`, 'utf8'));
  const jwk = jwks.find((k) => k.kty === (alg === 'ES256' ? 'EC' : 'RSA'));
  const key = crypto.createPrivateKey({ key: jwk, format: 'jwk' });
  kid = jwk.kid;
  sign = alg === 'ES256'
    ? (input) => crypto.sign('sha256', Buffer.from(input), { key, dsaEncoding: 'ieee-p1363' })
    : (input) => crypto.sign('sha256', Buffer.from(input), key);
}
const header = b64u(JSON.stringify({ alg, typ: 'at+jwt', kid }));
const now = Math.floor(Date.now() / 1000);
let out = [];
for (let i = 0; i < Number(n); i += 1) {
  const claims = b64u(JSON.stringify({
    iss: issuer, sub: `user-${i}`, aud: 'urn:test:api', iat: now, exp: now + 7200,
    client_id: 'api-client', scope: 'api:read', jti: crypto.randomBytes(8).toString('hex'),
  }));
  const input = `${header}.${claims}`;
  out.push(`${input}.${b64u(sign(input))}\n`);
  if (out.length === 10000) {
    fs.writeSync(1, out.join(''));
    out = [];
  }
}
fs.writeSync(1, out.join(''));
