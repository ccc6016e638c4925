// Node's fetch through HTTPS_PROXY, as an unmodified tool would use it: undici's
// EnvHttpProxyAgent reads HTTPS_PROXY (credentials in the URL), NODE_EXTRA_CA_CERTS adds the CA.
// Usage: node fetch.mjs URL   -> prints the status, then the body.
import { EnvHttpProxyAgent, fetch, setGlobalDispatcher } from 'undici';

setGlobalDispatcher(new EnvHttpProxyAgent());
try {
  const response = await fetch(process.argv[2]);
  console.log(response.status);
  console.log(await response.text());
} catch (error) {
  console.log('error');
  console.log(String(error.cause?.message ?? error.message));
}
