// node sign_webhook.mjs PATH_TO_WEBHOOKS_METHODS: reads a webhook body on stdin and the secret from
// $WEBHOOK_SECRET, prints "sha256=<hex>" as computed by @octokit/webhooks-methods' sign(), GitHub's
// own signing code, so the tests do not check kilnd's signature check against a signer of ours.
// PATH is the package's node entry point (scripts/fetch-webhook-methods.sh prints it).
import { pathToFileURL } from "node:url";

const [entry] = process.argv.slice(2);
const secret = process.env.WEBHOOK_SECRET;
if (!entry || !secret) {
  console.error("usage: WEBHOOK_SECRET=... node sign_webhook.mjs PATH_TO_WEBHOOKS_METHODS < body");
  process.exit(2);
}
const { sign } = await import(pathToFileURL(entry).href);

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
// sign() takes a string and hashes its UTF-8 encoding; bytes that are not UTF-8 would be replaced
// by U+FFFD and signed as other bytes than the ones sent, so they are refused instead.
let body;
try {
  body = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(Buffer.concat(chunks));
} catch {
  console.error("the body is not UTF-8: @octokit/webhooks-methods signs strings only");
  process.exit(2);
}
process.stdout.write(await sign(secret, body) + "\n");
