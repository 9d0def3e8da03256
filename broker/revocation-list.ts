/**
 * The revoked certificate serials a broker node enforces (G9), as pure state: the union of the
 * CRL file read at start (BROKER_CRL_FILE) and the latest list published on control/revocations.
 *
 * A published list is always complete (schemas/messages.ts RevocationList), so applying one
 * replaces the previous one; a list older than the one held (by its generatedAt) is ignored, so a
 * retained copy read at start cannot undo a newer list that arrived live meanwhile. Applying tells
 * which serials are new, for the wiring (./revocation-sync.ts) to close their connections.
 */
import type { RevocationList } from '../schemas/messages.js';

export type ApplyOutcome =
  | { applied: false; reason: string }
  | { applied: true; added: string[]; removed: string[]; count: number };

export class RevokedSerials {
  #fromFile: ReadonlySet<string> = new Set();
  #published: ReadonlySet<string> = new Set();
  #publishedAtMs: number | undefined;

  /** The serials of the CRL file; they stay revoked whatever the published list says. */
  setFileSerials(serials: Iterable<string>): void {
    this.#fromFile = new Set(serials);
  }

  /** Applies a complete published list; `list` must have passed checkRevocationListPayload. */
  apply(list: RevocationList): ApplyOutcome {
    const generatedAtMs = Date.parse(list.generatedAt);
    if (this.#publishedAtMs !== undefined && generatedAtMs < this.#publishedAtMs) {
      return {
        applied: false,
        reason: `generated at ${list.generatedAt}, before the list in force (${new Date(this.#publishedAtMs).toISOString()})`,
      };
    }
    const next = new Set(list.serials);
    const added = [...next].filter((serial) => !this.#published.has(serial) && !this.#fromFile.has(serial));
    const removed = [...this.#published].filter((serial) => !next.has(serial) && !this.#fromFile.has(serial));
    this.#published = next;
    this.#publishedAtMs = generatedAtMs;
    return { applied: true, added, removed, count: this.size };
  }

  has(serial: string | undefined): boolean {
    return serial !== undefined && (this.#published.has(serial) || this.#fromFile.has(serial));
  }

  get size(): number {
    let size = this.#published.size;
    for (const serial of this.#fromFile) if (!this.#published.has(serial)) size++;
    return size;
  }

  /** generatedAt of the published list in force, ms since the epoch; undefined before the first one */
  get publishedAtMs(): number | undefined {
    return this.#publishedAtMs;
  }
}
