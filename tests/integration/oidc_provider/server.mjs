// A real OpenID Connect provider for Sluice's SSO tests (node server.mjs <config.json>).
// The config names the port, the clients and the accounts (with their groups); the provider
// uses its development interactions (login form, consent form), which the tests drive with
// plain form posts. It prints "ready <issuer>" once it listens.
import { readFileSync } from 'node:fs';
import Provider from 'oidc-provider';

const cfg = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const issuer = `http://127.0.0.1:${cfg.port}`;
const accounts = cfg.accounts;

const provider = new Provider(issuer, {
  clients: cfg.clients,
  jwks: cfg.jwks, // fixed signing keys, so a test can rotate them by restarting
  pkce: { required: () => true }, // every client, confidential ones too (S256 only)
  scopes: ['openid', 'email', 'profile', 'groups', 'offline_access'],
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name', 'preferred_username'],
    groups: ['groups'],
  },
  // Scope claims go into the ID token itself (as Okta, Entra and Keycloak do for groups), not
  // only to the userinfo endpoint.
  conformIdTokenClaims: false,
  ttl: {
    // A client named "short-lived" gets ID tokens that expire after 2 seconds (expiry tests).
    IdToken: (ctx, token, client) => (client.clientId === 'short-lived' ? 2 : 3600),
    AccessToken: 3600,
    AuthorizationCode: 60,
    Interaction: 600,
    Session: 3600,
    Grant: 3600,
  },
  cookies: { keys: ['sluice-test-cookie-key-0123456789'] },
  features: {
    devInteractions: { enabled: true },
    // Access tokens for one API resource are JWTs with audience urn:sluice:api (as Okta's custom
    // authorization server issues them for api://default), carrying the groups claim too.
    resourceIndicators: {
      enabled: true,
      defaultResource: () => 'urn:sluice:api',
      useGrantedResource: () => true,
      getResourceServerInfo: () => ({
        scope: 'groups',
        audience: 'urn:sluice:api',
        accessTokenFormat: 'jwt',
        jwt: { sign: { alg: 'RS256' } },
      }),
    },
  },
  async extraTokenClaims(ctx, token) {
    const account = accounts[token.accountId];
    return account ? { groups: account.groups } : undefined;
  },
  async findAccount(ctx, sub) {
    const account = accounts[sub];
    if (!account) return undefined;
    return {
      accountId: sub,
      async claims() {
        return {
          sub,
          email: account.email,
          email_verified: account.email_verified ?? true, // an account may say false
          name: account.name,
          preferred_username: account.email,
          groups: account.groups,
        };
      },
    };
  },
});
provider.proxy = false;
const server = provider.listen(cfg.port, '127.0.0.1', () => {
  console.log(`ready ${issuer}`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
