// The official MCP TypeScript SDK on both sides of nginx (t/071):
//   node t/op/mcp.mjs server PORT
//       an MCP server (Streamable HTTP, stateless, JSON answers) on
//       127.0.0.1:PORT with one tool, `whoami`, that answers with the
//       X-Subject header nginx sets from the token's claims
//   node t/op/mcp.mjs client URL ISSUER CLIENT_ID CLIENT_SECRET
//       an MCP client that starts from nothing but the URL: the SDK's own
//       OAuth (401 → RFC 9728 metadata → the authorization server's
//       metadata → a client-credentials token) then lists the tools and
//       calls `whoami`; prints one JSON line (or {"error": ...}, exit 1)
import http from 'node:http';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { ClientCredentialsProvider } from '@modelcontextprotocol/sdk/client/auth-extensions.js';

const [mode, ...args] = process.argv.slice(2);

if (mode === 'server') {
  const port = Number(args[0]);
  http.createServer(async (req, res) => {
    // stateless: a server and a transport per request
    const server = new McpServer({ name: 'oauth2-module-test', version: '1.0.0' });
    server.registerTool('whoami', { description: 'the subject nginx authenticated' }, async (extra) => ({
      content: [{ type: 'text', text: String(extra.requestInfo?.headers?.['x-subject'] ?? '') }],
    }));
    const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableJsonResponse: true });
    res.on('close', () => {
      transport.close();
      server.close();
    });
    let body = '';
    for await (const chunk of req) body += chunk;
    await server.connect(transport);
    await transport.handleRequest(req, res, body ? JSON.parse(body) : undefined);
  }).listen(port, '127.0.0.1');
} else if (mode === 'client') {
  const [url, issuer, clientId, clientSecret] = args;
  // what the client's fetches met, in order (status and path)
  const seen = [];
  const fetchLogged = async (input, init) => {
    const res = await fetch(input, init);
    seen.push(`${res.status} ${new URL(String(input instanceof Request ? input.url : input)).pathname}`);
    return res;
  };
  const authProvider = new ClientCredentialsProvider({ clientId, clientSecret, expectedIssuer: issuer });
  const transport = new StreamableHTTPClientTransport(new URL(url), { authProvider, fetch: fetchLogged });
  const client = new Client({ name: 'oauth2-module-test-client', version: '1.0.0' });
  try {
    await client.connect(transport);
    const tools = (await client.listTools()).tools.map((t) => t.name);
    const result = await client.callTool({ name: 'whoami', arguments: {} });
    const token = authProvider.tokens()?.access_token;
    console.log(JSON.stringify({ tools, whoami: result.content[0].text, seen, token }));
    await client.close();
  } catch (e) {
    console.log(JSON.stringify({ error: String(e?.message ?? e), seen, token: authProvider.tokens()?.access_token }));
    process.exit(1);
  }
} else {
  console.error('usage: mcp.mjs server PORT | client URL ISSUER CLIENT_ID CLIENT_SECRET');
  process.exit(2);
}
