// Loaded first in every test process (NODE_OPTIONS=--import, set by test_e2b_sdk.py): makes
// `import ... from 'e2b'` load the release under test, KILN_E2B_SDK = e2b (2.51.0) or e2b-old
// (2.50.0, package.json's alias), so each test file runs unchanged against both releases.
import { register } from 'node:module';

register('./select_sdk_hooks.mjs', import.meta.url, { data: { sdk: process.env.KILN_E2B_SDK || 'e2b' } });
