/**
 * Returns the candidate that `input` most likely misspells, or undefined when none is close.
 * Case, `-` and `_` are ignored, so `token_endpoint` suggests `tokenEndpoint`.
 */
export function closestMatch(input: string, candidates: readonly string[]): string | undefined {
  const typed = simplify(input)
  // Two edits are a plausible typo for a field name, but in a short word they would match anything.
  const maxDistance = Math.min(2, Math.floor(typed.length / 3))
  let best: string | undefined
  let bestDistance = maxDistance + 1
  for (const candidate of candidates) {
    const distance = editDistance(typed, simplify(candidate))
    if (distance < bestDistance) {
      best = candidate
      bestDistance = distance
    }
  }
  return best
}

function simplify(word: string): string {
  return word.toLowerCase().replaceAll(/[-_]/g, '')
}

/**
 * Optimal string alignment distance: insertions, deletions, substitutions and swaps of two
 * neighboring characters each count one, since a swap is a common typo ("crop" for "corp").
 */
function editDistance(a: string, b: string): number {
  const rows = Array.from({ length: a.length + 1 }, () => new Array<number>(b.length + 1).fill(0))
  for (let i = 0; i <= a.length; i++) rows[i][0] = i
  for (let j = 0; j <= b.length; j++) rows[0][j] = j
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1
      let distance = Math.min(rows[i - 1][j] + 1, rows[i][j - 1] + 1, rows[i - 1][j - 1] + cost)
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) distance = Math.min(distance, rows[i - 2][j - 2] + 1)
      rows[i][j] = distance
    }
  }
  return rows[a.length][b.length]
}
