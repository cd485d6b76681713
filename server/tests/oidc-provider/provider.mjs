// Test OpenID provider for Fleetplane's Google sign-in tests.
//
// Real oidc-provider (panva, npm) with:
//   * one confidential client (client_secret_basic), PKCE (S256) required, response_type=code
//   * login + consent in one step: the interaction route logs in the account named by the
//     `login_hint` of the authorization request; without one it shows a one-field sign-in form
//     (an email), which a browser test fills in
//   * a test-control API under /__test/ to register accounts and make the provider misbehave
//     per account (wrong aud/iss, expired, unknown key, wrong nonce, alg none, access_denied)
//   * runtime key rotation (new kid) without losing sessions/codes
//
// Env: OIDC_PORT (0 = pick a free port), OIDC_CLIENT_ID, OIDC_CLIENT_SECRET,
//      OIDC_REDIRECT_URIS (comma separated), OIDC_ALG (RS256 | ES256, default RS256),
//      OIDC_ANY_LOOPBACK_PORT=1 (accept the registered loopback redirect_uri on any port).
// Prints one JSON line {"ready":true,"issuer":...,"port":...} on stdout when listening, and
// exits when its stdin closes (the test process that started it has ended).
//
// Nothing here touches the network beyond the loopback listener.

import http from 'node:http';
import crypto from 'node:crypto';
import { Provider, interactionPolicy as ip } from 'oidc-provider';
const { base: interactionPolicyBase, Prompt } = ip;
import { generateKeyPair, exportJWK, SignJWT, decodeJwt, decodeProtectedHeader, base64url } from 'jose';

const PORT = Number(process.env.OIDC_PORT ?? 0);
const CLIENT_ID = process.env.OIDC_CLIENT_ID ?? 'fleetplane-test';
const CLIENT_SECRET = process.env.OIDC_CLIENT_SECRET ?? 'fleetplane-test-secret';
const REDIRECT_URIS = (process.env.OIDC_REDIRECT_URIS ?? 'http://127.0.0.1:3000/api/v1/auth/google/callback')
  .split(',').map((s) => s.trim()).filter(Boolean);
const ALG = process.env.OIDC_ALG ?? 'RS256';
// RFC 8252 §7.3: for application_type=native, oidc-provider ignores the port of a loopback
// redirect_uri, so one provider can serve test servers whose port is only known later.
const ANY_LOOPBACK_PORT = process.env.OIDC_ANY_LOOPBACK_PORT === '1';

// ---------------------------------------------------------------- keys
let kidCounter = 0;
async function newKey() {
  const { privateKey } = await generateKeyPair(ALG, { extractable: true });
  const jwk = await exportJWK(privateKey);
  return { ...jwk, kid: `k${++kidCounter}-${crypto.randomBytes(4).toString('hex')}`, alg: ALG, use: 'sig' };
}
let signingKeys = [await newKey()]; // first = current signing key; the rest stay published
const rogueKey = { ...(await newKey()), kid: 'rogue' }; // never published in the JWKS

// ---------------------------------------------------------------- accounts
// sub -> { sub, email, email_verified, name, scenario }
const accounts = new Map();
function upsertAccount(a) {
  const sub = a.sub ?? `sub-${crypto.createHash('sha256').update(a.email ?? crypto.randomUUID()).digest('hex').slice(0, 16)}`;
  const acct = {
    sub,
    email: a.email ?? `${sub}@example.test`,
    email_verified: a.email_verified ?? true,
    name: a.name ?? sub,
    scenario: a.scenario ?? null,
  };
  accounts.set(sub, acct);
  return acct;
}
function findByHint(hint) {
  if (!hint) return undefined;
  if (accounts.has(hint)) return accounts.get(hint);
  for (const a of accounts.values()) if (a.email === hint) return a;
  // Unknown hint that looks like an e-mail: create a verified account on the fly.
  if (hint.includes('@')) return upsertAccount({ email: hint });
  return undefined;
}

// ---------------------------------------------------------------- id_token tampering
const SCENARIOS = new Set([
  'wrong_aud', 'wrong_iss', 'expired', 'unknown_key', 'bad_signature', 'wrong_nonce', 'no_nonce',
  'alg_none', 'access_denied',
]);
async function sign(payload, jwk, kid) {
  const key = await crypto.createPrivateKey({ key: jwk, format: 'jwk' });
  return new SignJWT(payload).setProtectedHeader({ alg: ALG, typ: 'JWT', kid }).sign(key);
}
async function tamper(idToken, scenario, issuer) {
  const p = decodeJwt(idToken);
  const { kid } = decodeProtectedHeader(idToken);
  const current = signingKeys.find((k) => k.kid === kid) ?? signingKeys[0];
  const now = Math.floor(Date.now() / 1000);
  switch (scenario) {
    case 'wrong_aud': return sign({ ...p, aud: 'some-other-client' }, current, kid);
    case 'wrong_iss': return sign({ ...p, iss: `${issuer}/not-the-issuer` }, current, kid);
    case 'expired': return sign({ ...p, iat: now - 7200, exp: now - 3600, auth_time: now - 7200 }, current, kid);
    case 'wrong_nonce': return sign({ ...p, nonce: 'not-the-nonce-you-sent' }, current, kid);
    case 'no_nonce': { const { nonce, ...rest } = p; return sign(rest, current, kid); }
    case 'unknown_key': return sign(p, rogueKey, 'rogue'); // kid absent from JWKS
    case 'bad_signature': return sign(p, rogueKey, kid); // published kid, wrong key
    case 'alg_none': {
      const h = base64url.encode(JSON.stringify({ alg: 'none', typ: 'JWT' }));
      return `${h}.${base64url.encode(JSON.stringify(p))}.`;
    }
    default: return idToken;
  }
}

// ---------------------------------------------------------------- provider
const server = http.createServer();
await new Promise((r) => server.listen(PORT, '127.0.0.1', r));
const port = server.address().port;
const ISSUER = `http://127.0.0.1:${port}`;
const COOKIE_KEYS = [crypto.randomBytes(32).toString('hex')];

// Google accepts prompt=select_account; oidc-provider rejects unknown prompt values unless the
// policy knows them. Register it as requestable (resolved by the auto-interaction below).
function interactionPolicy() {
  const policy = interactionPolicyBase();
  policy.add(new Prompt({ name: 'select_account', requestable: true }), 0);
  return policy;
}

function makeProvider() {
  const provider = new Provider(ISSUER, {
    clients: [{
      client_id: CLIENT_ID,
      client_secret: CLIENT_SECRET,
      redirect_uris: REDIRECT_URIS,
      application_type: ANY_LOOPBACK_PORT ? 'native' : 'web',
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
      id_token_signed_response_alg: ALG,
    }],
    jwks: { keys: signingKeys },
    // Distinct names: cookies are per host, not per port, so the provider's cookies and the
    // server-under-test's cookies share one jar on 127.0.0.1.
    cookies: { keys: COOKIE_KEYS, names: { session: 'op_session', interaction: 'op_interaction', resume: 'op_resume' } },
    pkce: { required: () => true }, // S256 is the only method oidc-provider accepts
    features: { devInteractions: { enabled: false } },
    claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'] },
    // Google puts email/email_verified into the id_token; oidc-provider by default keeps
    // scope-derived claims out of the id_token when an access token is also issued.
    conformIdTokenClaims: false,
    interactions: { policy: interactionPolicy(), url: (ctx, interaction) => `/interaction/${interaction.uid}` },
    ttl: { IdToken: 3600, AccessToken: 3600, Interaction: 600, Session: 3600, Grant: 3600 },
    async findAccount(ctx, sub) {
      const a = accounts.get(sub);
      if (!a) return undefined;
      return {
        accountId: sub,
        async claims() {
          return { sub: a.sub, email: a.email, email_verified: a.email_verified, name: a.name };
        },
      };
    },
    renderError(ctx, out) { ctx.type = 'json'; ctx.body = out; },
  });

  // Login + consent in one step: by login_hint, or else by the email typed into a small form.
  provider.use(async (ctx, next) => {
    const m = ctx.path.match(/^\/interaction\/([^/]+)$/);
    if (!m || !['GET', 'POST'].includes(ctx.method)) return next();
    const details = await provider.interactionDetails(ctx.req, ctx.res);
    const { params } = details;
    let hint = params.login_hint;
    if (ctx.method === 'POST') {
      hint = new URLSearchParams(await readBody(ctx.req)).get('email') ?? '';
    } else if (!hint) {
      ctx.type = 'html';
      ctx.body = `<!doctype html><title>Test provider: sign in</title>
<form method="post" action="/interaction/${m[1]}">
  <label>Email <input id="op-email" name="email" type="email" autofocus></label>
  <button id="op-submit" type="submit">Continue</button>
</form>`;
      return undefined;
    }
    const acct = findByHint(hint);
    let result;
    if (!acct) {
      result = { error: 'login_required', error_description: 'test provider: unknown or missing login_hint' };
    } else if (acct.scenario === 'access_denied') {
      result = { error: 'access_denied', error_description: 'the user said no' };
    } else {
      const grant = details.grantId
        ? await provider.Grant.find(details.grantId)
        : new provider.Grant({ accountId: acct.sub, clientId: params.client_id });
      grant.addOIDCScope(params.scope);
      const grantId = await grant.save();
      // Answer both prompts at once; oidc-provider then resumes straight to the redirect_uri.
      result = { select_account: {}, login: { accountId: acct.sub }, consent: { grantId } };
    }
    await provider.interactionFinished(ctx.req, ctx.res, result, { mergeWithLastSubmission: false });
    ctx.respond = false;
  });

  // Post-process the token response: per-account misbehaviour.
  provider.use(async (ctx, next) => {
    await next();
    if (ctx.oidc?.route === 'token' && ctx.status === 200 && ctx.body?.id_token) {
      const { sub } = decodeJwt(ctx.body.id_token);
      const scenario = accounts.get(sub)?.scenario;
      if (scenario) ctx.body.id_token = await tamper(ctx.body.id_token, scenario, ISSUER);
    }
  });

  provider.on('server_error', (ctx, err) => console.error('server_error', err));
  return provider;
}

let jwksHits = 0; // lets a test assert "exactly one JWKS refetch after rotation"
let provider = makeProvider();
let handler = provider.callback();

// ---------------------------------------------------------------- test-control API
async function readBody(req) {
  const chunks = [];
  for await (const c of req) chunks.push(c);
  return Buffer.concat(chunks).toString('utf8');
}
async function readJson(req) {
  const text = await readBody(req);
  return text ? JSON.parse(text) : {};
}
function send(res, status, body) {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}
async function control(req, res) {
  const url = new URL(req.url, ISSUER);
  try {
    if (req.method === 'POST' && url.pathname === '/__test/accounts') {
      const body = await readJson(req);
      if (body.scenario && !SCENARIOS.has(body.scenario)) return send(res, 400, { error: `unknown scenario ${body.scenario}` });
      return send(res, 200, upsertAccount(body));
    }
    if (req.method === 'POST' && url.pathname === '/__test/rotate') {
      // {"retire_old": true} drops the previous keys from the JWKS; default keeps them published.
      const body = await readJson(req);
      const k = await newKey();
      signingKeys = body.retire_old ? [k] : [k, ...signingKeys];
      provider = makeProvider(); // memory adapter storage is module-level: sessions/codes survive
      handler = provider.callback();
      return send(res, 200, { kid: k.kid, published: signingKeys.map((x) => x.kid) });
    }
    if (req.method === 'GET' && url.pathname === '/__test/state') {
      return send(res, 200, { issuer: ISSUER, kids: signingKeys.map((k) => k.kid), jwks_hits: jwksHits, accounts: [...accounts.values()] });
    }
    return send(res, 404, { error: 'not found' });
  } catch (e) {
    return send(res, 500, { error: String(e) });
  }
}

server.on('request', (req, res) => {
  if (req.url.startsWith('/__test/')) return control(req, res);
  if (req.url === '/jwks' || req.url.startsWith('/jwks?')) jwksHits++;
  return handler(req, res);
});
process.stdout.write(`${JSON.stringify({ ready: true, issuer: ISSUER, port })}\n`);
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => server.close(() => process.exit(0)));
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
