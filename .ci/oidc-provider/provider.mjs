// A real OpenID Connect provider for latchkey's tests: panva's `oidc-provider`, configured
// for tests, offline, on one port of 127.0.0.1. The Rust side is
// `crates/latchkey-server/tests/common/oidc.rs`.
//
//   node .ci/oidc-provider/provider.mjs --port PORT
//
// The issuer is `http://127.0.0.1:PORT` (no trailing slash). When it listens it prints
// `listening http://127.0.0.1:PORT` on stdout; when the port is taken it says "address
// already in use" on stderr and exits with status 1.
//
// What it serves:
// - the provider's own endpoints (discovery, /jwks, /auth, /token, /me, /reg, …) with
//   dynamic client registration (RFC 7591, open: no initial access token), the code flow
//   only (response_type=code) with PKCE S256 required, scopes `openid email profile`, the
//   dev interactions (the built-in login and consent forms: any password is accepted);
// - a test-only admin API under /test/, answered before the provider sees the request:
//     PUT    /test/accounts/{sub}  {"email", "email_verified", "preferred_username", "name"}
//                                  sets (replaces) the claims of that subject; a claim
//                                  that is null or absent is not issued at all
//     GET    /test/requests        {"discovery", "jwks", "token", "auth", "userinfo",
//                                  "other"}: the provider's requests served so far, by
//                                  path (the /test/ API is not counted)
//     DELETE /test/requests        sets those counts back to zero
//
// A subject that was never set logs in all the same and gets no claims but `sub` (no
// email): the dev login form accepts any login.
//
// Claims are issued in the ID token as well as at the userinfo endpoint
// (conformIdTokenClaims: false). Cookies are not `Secure` over http (oidc-provider sets
// Secure only on requests it sees as https), so a plain http client with a cookie store
// carries the provider's session and interaction cookies.

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import { parseArgs } from 'node:util';

import Provider from 'oidc-provider';

const { values: options } = parseArgs({
  options: { port: { type: 'string' } },
  strict: true,
});
const port = Number(options.port);
if (!Number.isInteger(port) || port < 1 || port > 65535) {
  console.error('usage: node provider.mjs --port PORT');
  process.exit(2);
}
const issuer = `http://127.0.0.1:${port}`;

// The subjects' claims, set through PUT /test/accounts/{sub}.
const accounts = new Map();
const CLAIMS = ['email', 'email_verified', 'preferred_username', 'name'];

// One RS256 signing key for the life of this process.
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = {
  ...privateKey.export({ format: 'jwk' }),
  kid: randomBytes(8).toString('hex'),
  alg: 'RS256',
  use: 'sig',
};

const ROUTES = {
  authorization: '/auth',
  jwks: '/jwks',
  registration: '/reg',
  token: '/token',
  userinfo: '/me',
};

const provider = new Provider(issuer, {
  routes: ROUTES,
  jwks: { keys: [signingKey] },
  cookies: { keys: [randomBytes(32).toString('base64url')] },
  features: {
    devInteractions: { enabled: true },
    registration: { enabled: true },
  },
  responseTypes: ['code'],
  pkce: { required: () => true },
  scopes: ['openid'],
  claims: {
    acr: null,
    sid: null,
    auth_time: null,
    iss: null,
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['preferred_username', 'name'],
  },
  conformIdTokenClaims: false,
  async findAccount(ctx, sub) {
    return {
      accountId: sub,
      async claims() {
        const claims = { sub };
        const set = accounts.get(sub) ?? {};
        for (const name of CLAIMS) {
          if (set[name] !== undefined && set[name] !== null) {
            claims[name] = set[name];
          }
        }
        return claims;
      },
    };
  },
});
const handle = provider.callback();

// Requests served, by path group.
const GROUPS = ['discovery', 'jwks', 'token', 'auth', 'userinfo', 'other'];
let requests;
const resetRequests = () => {
  requests = Object.fromEntries(GROUPS.map((group) => [group, 0]));
};
resetRequests();

function groupOf(path) {
  if (path === '/.well-known/openid-configuration') return 'discovery';
  if (path === ROUTES.jwks) return 'jwks';
  if (path === ROUTES.token) return 'token';
  if (path === ROUTES.authorization || path.startsWith(`${ROUTES.authorization}/`)) return 'auth';
  if (path === ROUTES.userinfo) return 'userinfo';
  return 'other';
}

function answer(res, status, body) {
  const text = body === undefined ? '' : JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
  });
  res.end(text);
}

async function readJson(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return JSON.parse(Buffer.concat(chunks).toString('utf8'));
}

async function admin(req, res, path) {
  if (path === '/test/requests') {
    if (req.method === 'GET') return answer(res, 200, requests);
    if (req.method === 'DELETE') {
      resetRequests();
      return answer(res, 204);
    }
    return answer(res, 405, { error: 'GET or DELETE' });
  }
  const account = path.match(/^\/test\/accounts\/([^/]+)$/);
  if (account) {
    if (req.method !== 'PUT') return answer(res, 405, { error: 'PUT' });
    let body;
    try {
      body = await readJson(req);
    } catch (error) {
      return answer(res, 400, { error: `not JSON: ${error.message}` });
    }
    if (body === null || typeof body !== 'object' || Array.isArray(body)) {
      return answer(res, 400, { error: 'a JSON object of claims' });
    }
    const claims = {};
    for (const name of CLAIMS) {
      if (name in body) claims[name] = body[name];
    }
    accounts.set(decodeURIComponent(account[1]), claims);
    return answer(res, 204);
  }
  return answer(res, 404, { error: `no test route ${path}` });
}

const server = createServer((req, res) => {
  const path = new URL(req.url, issuer).pathname;
  if (path.startsWith('/test/')) {
    admin(req, res, path).catch((error) => answer(res, 500, { error: String(error) }));
    return;
  }
  requests[groupOf(path)] += 1;
  handle(req, res);
});

server.on('error', (error) => {
  if (error.code === 'EADDRINUSE') {
    console.error(`oidc-provider: 127.0.0.1:${port}: address already in use`);
  } else {
    console.error(`oidc-provider: cannot listen on 127.0.0.1:${port}: ${error.message}`);
  }
  process.exit(1);
});

server.listen(port, '127.0.0.1', () => {
  console.log(`listening ${issuer}`);
});

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => process.exit(0));
}
