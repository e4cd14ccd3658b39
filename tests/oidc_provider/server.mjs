// A real OpenID provider (npm `oidc-provider`) for the DevBench test suite.
//
// Usage: node server.mjs CONFIG.json
// Listens on 127.0.0.1 on a free port and prints one JSON line
// {"issuer": "http://127.0.0.1:PORT"} on stdout once it accepts requests.
//
// CONFIG.json (written by the test fixture):
//   jwks       {"keys": [private JWK, ...]}  signing keys (the tests keep a copy to mint
//              tokens that only differ from the provider's in one claim)
//   clients    oidc-provider client metadata list
//   accounts   {"<login>": {claims...}}  claims served for that login (groups, email, ...)
//   resources  {"<resource indicator>": {"scope": "...", "ttl": seconds}} APIs whose access
//              tokens are JWTs with aud = the indicator
//
// Sign-in uses the provider's development interactions (any password): the tests follow
// its real login and consent forms over HTTP.
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';

import Provider from 'oidc-provider';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const accounts = config.accounts ?? {};
const resources = config.resources ?? {};

const server = createServer();
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}`;
  const resourceScopes = new Set(
    Object.values(resources).flatMap((r) => (r.scope ?? '').split(' ').filter(Boolean)),
  );

  const provider = new Provider(issuer, {
    clients: config.clients,
    jwks: config.jwks,
    cookies: { keys: ['devbench-test-provider-cookie-key'] },
    scopes: ['openid', 'offline_access', 'email', 'profile', 'groups', ...resourceScopes],
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name', 'preferred_username'],
      groups: ['groups'],
    },
    pkce: { required: () => true },
    features: {
      devInteractions: { enabled: true },
      clientCredentials: { enabled: true },
      introspection: { enabled: true },
      resourceIndicators: {
        enabled: true,
        // No resource requested: an opaque access token, good for userinfo.
        defaultResource: () => undefined,
        useGrantedResource: () => true,
        getResourceServerInfo: (ctx, indicator) => {
          const info = resources[indicator];
          if (!info) {
            throw new Provider.errors.InvalidTarget();
          }
          return {
            scope: info.scope ?? '',
            audience: indicator,
            accessTokenTTL: info.ttl ?? 600,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg: 'RS256' } },
          };
        },
      },
    },
    // Like most enterprise providers can be set up to: groups in JWT access tokens too.
    extraTokenClaims: (ctx, token) => {
      const groups = accounts[token.accountId]?.groups;
      return groups ? { groups } : undefined;
    },
    findAccount: (ctx, id) => ({
      accountId: id,
      claims: () => ({ sub: id, preferred_username: id, ...(accounts[id] ?? {}) }),
    }),
    ttl: {
      AccessToken: 600,
      AuthorizationCode: 60,
      IdToken: 600,
      Interaction: 600,
      Session: 3600,
      Grant: 3600,
      ClientCredentials: 600,
    },
  });
  provider.proxy = false;
  server.on('request', provider.callback());
  process.stdout.write(`${JSON.stringify({ issuer })}\n`);
});

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => process.exit(0));
}
