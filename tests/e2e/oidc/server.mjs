// A standards-compliant authorization server (oidc-provider) for Tollgate's end-to-end test.
// Usage: node server.mjs PORT CERT_FILE KEY_FILE REDIRECT_URI
// Listens on 127.0.0.1:PORT over TLS with issuer https://auth.test:PORT; prints "ready".
import fs from 'node:fs';
import https from 'node:https';
import Provider from 'oidc-provider';

const [port, certFile, keyFile, redirectUri] = process.argv.slice(2);
const issuer = `https://auth.test:${port}`;

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: 'tollgate',
      client_secret: 'tollgate-client-secret',
      application_type: 'native', // allows the loopback http redirect URI (RFC 8252)
      redirect_uris: [redirectUri],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
    },
    {
      client_id: 'machine',
      client_secret: 'machine-client-secret',
      redirect_uris: [],
      response_types: [],
      grant_types: ['client_credentials'],
      token_endpoint_auth_method: 'client_secret_basic',
      scope: 'api:read',
    },
    {
      // The console's own sign-in (an OpenID Connect relying party).
      client_id: 'tollgate-console',
      client_secret: 'tollgate-console-secret',
      application_type: 'native', // the loopback http redirect URI of the tests
      redirect_uris: [redirectUri.replace('/oauth/callback', '/console/oidc/callback')],
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
    },
    {
      // Accepts only client_secret_post: a client that sends HTTP Basic is refused.
      client_id: 'machine-post',
      client_secret: 'machine-post-client-secret',
      redirect_uris: [],
      response_types: [],
      grant_types: ['client_credentials'],
      token_endpoint_auth_method: 'client_secret_post',
      scope: 'api:read',
    },
  ],
  scopes: ['openid', 'offline_access', 'api:read', 'groups'],
  claims: { openid: ['sub'], groups: ['groups'] },
  features: {
    devInteractions: { enabled: true },
    revocation: { enabled: true },
    introspection: { enabled: true },
    clientCredentials: { enabled: true },
  },
  pkce: { required: () => true },
  rotateRefreshToken: true,
  ttl: { AccessToken: 20, ClientCredentials: 600, RefreshToken: 3600, Grant: 3600, Interaction: 600, Session: 600 },
  issueRefreshToken: async (ctx, client, code) =>
    client.grantTypeAllowed('refresh_token') && code.scopes.has('offline_access'),
  // Accounts whose name starts with "admin-" are in the console's admin group.
  findAccount: async (ctx, id) => ({
    accountId: id,
    claims: async () => ({ sub: id, groups: id.startsWith('admin-') ? ['tollgate-admins'] : ['staff'] }),
  }),
});

https
  .createServer({ cert: fs.readFileSync(certFile), key: fs.readFileSync(keyFile) }, provider.callback())
  .listen(Number(port), '127.0.0.1', () => console.log('ready'));
