// Verifies an image's sigstore bundles and cosign `.att` attestations in a
// registry with sigstore-js (@sigstore/bundle parses and validates,
// @sigstore/verify verifies), with a raw public key as the only trust
// material: no Fulcio, no Rekor, no timestamp authority, every threshold 0,
// as `cosign verify --key K --insecure-ignore-tlog` would. It shares no code
// with plinth: the registry is read with node's fetch, the crypto is node's
// OpenSSL, the bundle format is sigstore-js's own reading of it.
//
//   node verify_bundle.mjs bundle REGISTRY_URL REPOSITORY REFERENCE PUBKEY_PEM PREDICATE_TYPE...
//   node verify_bundle.mjs att    REGISTRY_URL REPOSITORY REFERENCE PUBKEY_PEM PREDICATE_TYPE...
//
// bundle: the referrers of the manifest REFERENCE points at (the referrers
// API, else the `sha256-<hex>` tag of the fallback schema) with artifact
// type application/vnd.dev.sigstore.bundle.v0.3+json; for each wanted
// predicate type, one must verify.
// att: the DSSE envelopes in the layers of the `sha256-<hex>.att` image;
// for each wanted predicate type, one must verify.
// Either way the verified in-toto statement must name the manifest's digest
// among its subjects and have the predicate type. One line out; exit 0 (OK)
// or 1 (FAIL).
import { createHash, createPublicKey } from 'node:crypto';
import { readFileSync } from 'node:fs';

import { bundleFromJSON, envelopeFromJSON, toDSSEBundle } from '@sigstore/bundle';
import { PublicKeyDetails } from '@sigstore/protobuf-specs';
import { Verifier, toSignedEntity, toTrustMaterial } from '@sigstore/verify';

const BUNDLE_TYPE = 'application/vnd.dev.sigstore.bundle.v0.3+json';
const DSSE_TYPE = 'application/vnd.dsse.envelope.v1+json';
const IN_TOTO = 'application/vnd.in-toto+json';
const ACCEPT = [
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.oci.image.manifest.v1+json',
].join(', ');

class Fail extends Error {}

const sha256 = (bytes) => 'sha256:' + createHash('sha256').update(bytes).digest('hex');

async function get(url, accept) {
  const resp = await fetch(url, { headers: accept ? { Accept: accept } : {} });
  if (resp.status === 404) return null;
  if (!resp.ok) throw new Fail(`GET ${url}: HTTP ${resp.status}`);
  return Buffer.from(await resp.arrayBuffer());
}

async function blob(base, descriptor) {
  const bytes = await get(`${base}/blobs/${descriptor.digest}`);
  if (bytes === null) throw new Fail(`blob ${descriptor.digest} is missing`);
  if (sha256(bytes) !== descriptor.digest || bytes.length !== descriptor.size) {
    throw new Fail(`blob ${descriptor.digest} does not match its descriptor`);
  }
  return bytes;
}

// The statement of a verified bundle, checked against digest and predicate.
function statementOf(verifier, bundle, digest, predicateType) {
  if (bundle.content.$case !== 'dsseEnvelope') throw new Fail('not a DSSE bundle');
  verifier.verify(toSignedEntity(bundle));
  const env = bundle.content.dsseEnvelope;
  if (env.payloadType !== IN_TOTO) throw new Fail(`payloadType ${env.payloadType}`);
  const statement = JSON.parse(env.payload.toString('utf8'));
  const hex = digest.replace(/^sha256:/, '');
  if (!(statement.subject || []).some((s) => s && s.digest && s.digest.sha256 === hex)) {
    throw new Fail(`the statement has no subject ${digest}`);
  }
  if (statement.predicateType !== predicateType) {
    throw new Fail(`predicateType ${statement.predicateType}, expected ${predicateType}`);
  }
  return statement;
}

async function main() {
  const [mode, registry, repository, reference, pubkey, ...predicates] = process.argv.slice(2);
  if (!['bundle', 'att'].includes(mode) || predicates.length === 0) {
    throw new Fail('usage: verify_bundle.mjs bundle|att REGISTRY_URL REPOSITORY REFERENCE PUBKEY_PEM PREDICATE_TYPE...');
  }
  const der = createPublicKey(readFileSync(pubkey)).export({ type: 'spki', format: 'der' });
  // The hint cosign writes: base64(sha256(SPKI DER)), computed here from the
  // key file, so a bundle naming another key's hint finds no key.
  const hint = createHash('sha256').update(der).digest('base64');
  const trust = toTrustMaterial(
    { mediaType: '', certificateAuthorities: [], timestampAuthorities: [], tlogs: [], ctlogs: [] },
    { [hint]: { rawBytes: der, keyDetails: PublicKeyDetails.PKIX_ECDSA_P256_SHA_256, validFor: undefined } }
  );
  const verifier = new Verifier(trust, { tlogThreshold: 0, ctlogThreshold: 0, tsaThreshold: 0 });

  const base = `${registry}/v2/${repository}`;
  const manifest = await get(`${base}/manifests/${reference}`, ACCEPT);
  if (manifest === null) throw new Fail(`${repository}:${reference} does not exist`);
  const digest = sha256(manifest);
  const tag = digest.replace(':', '-');

  // Candidates: [annotated predicate type, () => bundle] pairs.
  const candidates = [];
  if (mode === 'bundle') {
    let index = null;
    const api = await fetch(`${base}/referrers/${digest}`, { headers: { Accept: ACCEPT } });
    if (api.ok) index = JSON.parse(Buffer.from(await api.arrayBuffer()).toString('utf8'));
    if (!index || !Array.isArray(index.manifests)) {
      const fallback = await get(`${base}/manifests/${tag}`, ACCEPT);
      index = fallback === null ? { manifests: [] } : JSON.parse(fallback.toString('utf8'));
    }
    for (const d of index.manifests.filter((m) => m.artifactType === BUNDLE_TYPE)) {
      const annotated = (d.annotations || {})['dev.sigstore.bundle.predicateType'];
      candidates.push([annotated, async () => {
        const bytes = await get(`${base}/manifests/${d.digest}`, ACCEPT);
        if (bytes === null || sha256(bytes) !== d.digest) throw new Fail(`referrer ${d.digest} is missing or altered`);
        const referrer = JSON.parse(bytes.toString('utf8'));
        if (!referrer.subject || referrer.subject.digest !== digest) throw new Fail('referrer of another subject');
        const layer = (referrer.layers || [])[0];
        if (!layer || layer.mediaType !== BUNDLE_TYPE) throw new Fail('referrer without a bundle layer');
        // bundleFromJSON validates the bundle (media type, one DSSE signature ...).
        return bundleFromJSON(JSON.parse((await blob(base, layer)).toString('utf8')));
      }]);
    }
  } else {
    const att = await get(`${base}/manifests/${tag}.att`, ACCEPT);
    if (att === null) throw new Fail(`no ${tag}.att`);
    for (const layer of JSON.parse(att.toString('utf8')).layers || []) {
      if (layer.mediaType !== DSSE_TYPE) continue;
      candidates.push([(layer.annotations || {}).predicateType, async () => {
        const env = envelopeFromJSON(JSON.parse((await blob(base, layer)).toString('utf8')));
        if (env.signatures.length !== 1) throw new Fail(`envelope has ${env.signatures.length} signatures`);
        return toDSSEBundle({ artifact: env.payload, artifactType: env.payloadType, signature: env.signatures[0].sig, keyHint: hint });
      }]);
    }
  }

  const verified = [];
  for (const predicateType of predicates) {
    const reasons = [];
    let ok = false;
    for (const [annotated, load] of candidates) {
      if (annotated !== predicateType) continue;
      try {
        statementOf(verifier, await load(), digest, predicateType);
        ok = true;
        break;
      } catch (e) {
        reasons.push(`${e.name}: ${e.code ? e.code + ': ' : ''}${e.message}`);
      }
    }
    if (!ok) {
      throw new Fail(`${predicateType}: ${reasons.length ? reasons.join('; ') : 'none found'}`);
    }
    verified.push(predicateType);
  }
  return `OK sigstore-js verified ${mode} ${verified.join(', ')} for ${repository}:${reference} (${digest})`;
}

main().then(
  (line) => console.log(line),
  (e) => {
    console.log(`FAIL ${String(e.message || e).replace(/\s+/g, ' ')}`);
    process.exit(1);
  }
);
