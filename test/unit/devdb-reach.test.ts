import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { canSearch, type DirStat, firstUnsearchable } from '../../src/devdb/reach.js';

/** Can the embedded server's OS user walk down to a directory? (Owner, then group, then other bits.) */

const postgres = { uid: 100, gid: 101 };
const ROOT_OWNED = { uid: 0, gid: 0 };

describe('canSearch', () => {
  it('uses the owner bits for the owner, the group bits for the group, the other bits for everyone else', () => {
    assert.equal(canSearch({ ...postgres, mode: 0o700 }, postgres), true);
    assert.equal(
      canSearch({ ...postgres, mode: 0o077 }, postgres),
      false,
      'owner bits win even when others may',
    );
    assert.equal(canSearch({ uid: 0, gid: 101, mode: 0o710 }, postgres), true);
    assert.equal(
      canSearch({ uid: 0, gid: 101, mode: 0o701 }, postgres),
      false,
      'group bits win for the group',
    );
    assert.equal(canSearch({ ...ROOT_OWNED, mode: 0o711 }, postgres), true);
    assert.equal(canSearch({ ...ROOT_OWNED, mode: 0o700 }, postgres), false);
    assert.equal(
      canSearch({ ...ROOT_OWNED, mode: 0o754 }, postgres),
      false,
      'r without x does not let it in',
    );
  });
});

describe('firstUnsearchable', () => {
  const tree: Record<string, DirStat> = {
    '/': { ...ROOT_OWNED, mode: 0o755 },
    '/root': { ...ROOT_OWNED, mode: 0o700 },
    '/root/private': { ...ROOT_OWNED, mode: 0o755 },
    '/root/private/clone': { ...ROOT_OWNED, mode: 0o755 },
    '/tmp': { ...ROOT_OWNED, mode: 0o1777 },
    '/tmp/agent-gateway-pg-x': { ...ROOT_OWNED, mode: 0o711 },
  };
  const stat = async (path: string) => {
    const st = tree[path];
    if (st === undefined) throw Object.assign(new Error(`ENOENT ${path}`), { code: 'ENOENT' });
    return st;
  };

  it('names the topmost directory on the way that shuts the user out', async () => {
    assert.deepEqual(await firstUnsearchable('/root/private/clone', postgres, stat), {
      dir: '/root',
      mode: 0o700,
    });
  });

  it('passes a path every directory of which lets the user through, itself included', async () => {
    assert.equal(await firstUnsearchable('/tmp/agent-gateway-pg-x', postgres, stat), undefined);
    assert.deepEqual(await firstUnsearchable('/root', postgres, stat), { dir: '/root', mode: 0o700 });
  });
});
