// The resolve hook of select_sdk.mjs: the bare specifier 'e2b' resolves to the chosen package.
let sdk = 'e2b';

export async function initialize(data) {
  sdk = data.sdk;
}

export async function resolve(specifier, context, next) {
  return next(specifier === 'e2b' ? sdk : specifier, context);
}
