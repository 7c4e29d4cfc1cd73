import { isAbsolute } from 'node:path'
import { isScalar } from 'yaml'
import type { SecretRef } from './types.js'
import type { Field, FieldMap, FieldReader } from './yaml-fields.js'

const EXAMPLE = '{ file: /var/run/secrets/obo/client-secret } or { env: OBO_CLIENT_SECRET }'

/**
 * Reads `{ file: /absolute/path }` or `{ env: NAME }`. The secret itself is not read here: the
 * sidecar checks at startup that it can be read. Values are never shown in messages, because a
 * user may have pasted the secret where its location belongs. `extraKeys` are allowed beside
 * `file` and `env` and are left for the caller.
 */
export function readSecretRef(
  reader: FieldReader,
  field: Field,
  extraKeys: readonly string[] = [],
): { ref: SecretRef | undefined; fields: FieldMap | undefined } {
  const hidden: Field = { ...field, sensitive: true }
  if (isScalar(field.node) && typeof field.node.value === 'string') {
    reader.report(field, `expected ${EXAMPLE}, got a string; the routes file names where a secret is and never contains it`)
    return { ref: undefined, fields: undefined }
  }
  const fields = reader.mapping(hidden, ['file', 'env', ...extraKeys])
  if (fields === undefined) return { ref: undefined, fields: undefined }

  const file = fields.get('file')
  const env = fields.get('env')
  if (file !== undefined && env !== undefined) {
    reader.report(field, 'set exactly one of "file" or "env", not both')
    return { ref: undefined, fields }
  }
  if (file !== undefined) return { ref: readFileRef(reader, file), fields }
  if (env !== undefined) return { ref: readEnvRef(reader, env), fields }
  reader.report(field, `missing "file" or "env"; expected ${EXAMPLE}`)
  return { ref: undefined, fields }
}

function readFileRef(reader: FieldReader, field: Field): SecretRef | undefined {
  const path = reader.string(field)
  if (path === undefined) return undefined
  if (!isAbsolute(path)) {
    reader.report(field, 'expected an absolute path such as /var/run/secrets/obo/client-secret (the value is not shown)')
    return undefined
  }
  return { kind: 'file', path }
}

function readEnvRef(reader: FieldReader, field: Field): SecretRef | undefined {
  const name = reader.string(field)
  if (name === undefined) return undefined
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) {
    reader.report(
      field,
      'expected an environment variable name of letters, digits and "_", not starting with a digit, such as OBO_CLIENT_SECRET (the value is not shown)',
    )
    return undefined
  }
  return { kind: 'env', name }
}
