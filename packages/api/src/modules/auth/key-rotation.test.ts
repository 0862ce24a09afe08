import { randomBytes, randomUUID } from 'node:crypto';
import type { Express } from 'express';
import { decodeProtectedHeader, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { accessTokenKeyId, createLogger } from '@lms/core';
import type { TestEnv } from '@lms/core/testing';
import { createApp } from '../../app.js';
import { closeDeps, createDeps, type Deps } from '../../deps.js';
import { call, createApiTestEnv, TEST_PASSWORD } from '../../testing/test-app.js';

/**
 * A rotation of SECRET_KEY as a rolling deploy performs it: replicas of the old and the new
 * configuration serve at once behind one load balancer, on one database and one Redis, while
 * signed-in clients keep calling and refreshing. Every call is one that must answer 200.
 */

const OLD_KEY = randomBytes(32).toString('hex');
const NEW_KEY = randomBytes(32).toString('hex');
const OLD_KID = accessTokenKeyId(OLD_KEY);
const NEW_KID = accessTokenKeyId(NEW_KEY);

/** The configurations a replica goes through, in the order of the runbook. */
const CONFIGS = {
  before: { SECRET_KEY: OLD_KEY },
  staged: { SECRET_KEY: OLD_KEY, SECRET_KEY_PREVIOUS: NEW_KEY },
  switched: { SECRET_KEY: NEW_KEY, SECRET_KEY_PREVIOUS: OLD_KEY },
  retired: { SECRET_KEY: NEW_KEY },
} as const;
type Stage = keyof typeof CONFIGS;

let env: TestEnv;
const opened: Deps[] = [];
let apps: Record<Stage, Express>;

/** One API process with `vars`, on the shared database and Redis prefix. */
function replica(vars: Record<string, string>): Express {
  const parsed = env.config(vars);
  const config = { ...parsed, SECRET_KEY: parsed.SECRET_KEY ?? '' };
  const deps = createDeps(config, { redisPrefix: `${env.redisPrefix}:`, logger: createLogger({ level: 'silent' }) });
  opened.push(deps);
  return createApp(deps);
}

beforeAll(async () => {
  env = await createApiTestEnv('key-rotation');
  apps = {
    before: replica(CONFIGS.before),
    staged: replica(CONFIGS.staged),
    switched: replica(CONFIGS.switched),
    retired: replica(CONFIGS.retired),
  };
});

afterAll(async () => {
  try {
    for (const deps of opened) await closeDeps(deps);
  } finally {
    await env.cleanup();
  }
});

interface Client {
  email: string;
  accessToken: string;
  refreshToken: string;
}

interface Answer {
  phase: string;
  replica: Stage;
  kid: string | undefined;
  status: number;
}

/** The replicas behind the load balancer, taken in turn; a deploy replaces them one by one. */
class Fleet {
  private turn = 0;
  constructor(readonly slots: Stage[]) {}

  next(): Stage {
    const stage = this.slots[this.turn % this.slots.length]!;
    this.turn += 1;
    return stage;
  }
}

const kidOf = (token: string) => decodeProtectedHeader(token).kid;

async function signIn(stage: Stage, email: string): Promise<Client> {
  const response = await call(apps[stage], 'post', '/api/v1/auth/login', { body: { email, password: TEST_PASSWORD } });
  expect(response.status, response.text).toBe(200);
  return {
    email,
    accessToken: response.body.accessToken as string,
    refreshToken: response.body.refreshToken as string,
  };
}

async function signUp(stage: Stage): Promise<Client> {
  const email = `rotation-${randomUUID().slice(0, 8)}@example.com`;
  const response = await call(apps[stage], 'post', '/api/v1/auth/register', {
    body: { email, password: TEST_PASSWORD, name: 'Rotating Client' },
  });
  expect(response.status, response.text).toBe(201);
  return {
    email,
    accessToken: response.body.accessToken as string,
    refreshToken: response.body.refreshToken as string,
  };
}

/**
 * Each client calls `/users/me` through the fleet and, every other round, refreshes its session
 * through it (the new access token is signed by whichever replica answered).
 */
async function traffic(phase: string, fleet: Fleet, clients: Client[], answers: Answer[], rounds = 2) {
  for (let round = 0; round < rounds; round++) {
    for (const client of clients) {
      const stage = fleet.next();
      const me = await call(apps[stage], 'get', '/api/v1/users/me', { token: client.accessToken });
      answers.push({ phase, replica: stage, kid: kidOf(client.accessToken), status: me.status });
      if (round % 2 === 1) {
        const refreshStage = fleet.next();
        const refreshed = await call(apps[refreshStage], 'post', '/api/v1/auth/refresh', {
          body: { refreshToken: client.refreshToken },
        });
        answers.push({ phase: `${phase} refresh`, replica: refreshStage, kid: undefined, status: refreshed.status });
        if (refreshed.status === 200) {
          client.accessToken = refreshed.body.accessToken as string;
          client.refreshToken = refreshed.body.refreshToken as string;
        }
      }
    }
  }
}

/** A rolling deploy: one slot at a time goes to `to`, with traffic before and after each step. */
async function roll(phase: string, fleet: Fleet, to: Stage, clients: Client[], answers: Answer[]) {
  await traffic(phase, fleet, clients, answers);
  for (let slot = 0; slot < fleet.slots.length; slot++) {
    fleet.slots[slot] = to;
    await traffic(phase, fleet, clients, answers);
  }
}

describe('rotating SECRET_KEY during traffic', () => {
  it('stage, switch, retire as rolling deploys: no call is answered 401, and sessions go on', async () => {
    const fleet = new Fleet(['before', 'before', 'before']);
    const clients = [await signUp('before'), await signUp('before'), await signUp('before')];
    const answers: Answer[] = [];
    const oldKeyToken = clients[0]!.accessToken;

    await roll('stage', fleet, 'staged', clients, answers);
    await roll('switch', fleet, 'switched', clients, answers);
    // ACCESS_TOKEN_TTL after the switch has finished, no token of the old key is left unexpired:
    // by then every client has refreshed at a switched replica (the refresh tokens never
    // depended on the key), which is what this models.
    for (const [index, client] of clients.entries()) {
      const refreshed = await call(apps.switched, 'post', '/api/v1/auth/refresh', {
        body: { refreshToken: client.refreshToken },
      });
      expect(refreshed.status).toBe(200);
      clients[index] = {
        ...client,
        accessToken: refreshed.body.accessToken as string,
        refreshToken: refreshed.body.refreshToken as string,
      };
    }
    await roll('retire', fleet, 'retired', clients, answers);

    const refused = answers.filter((answer) => answer.status !== 200);
    expect(refused).toEqual([]);
    // The traffic crossed keys where it could go wrong: while switching, tokens of the new key
    // reached replicas that still sign with the old one, and tokens of the old key reached
    // replicas that sign with the new one.
    const switching = answers.filter((answer) => answer.phase === 'switch');
    expect(switching).toContainEqual({ phase: 'switch', replica: 'staged', kid: NEW_KID, status: 200 });
    expect(switching).toContainEqual({ phase: 'switch', replica: 'switched', kid: OLD_KID, status: 200 });
    expect(answers.filter((answer) => answer.phase === 'retire').every((answer) => answer.kid === NEW_KID)).toBe(true);
    // Retiring before ACCESS_TOKEN_TTL had passed would have refused the old key's tokens.
    expect(kidOf(oldKeyToken)).toBe(OLD_KID);
    expect((await call(apps.switched, 'get', '/api/v1/users/me', { token: oldKeyToken })).status).toBe(200);
    expect((await call(apps.retired, 'get', '/api/v1/users/me', { token: oldKeyToken })).status).toBe(401);
  });

  it('switching without the stage refuses the new tokens at the replicas not yet deployed', async () => {
    const fleet = new Fleet(['before', 'before', 'before']);
    const clients = [await signUp('before'), await signUp('before')];
    const answers: Answer[] = [];

    await roll('switch', fleet, 'switched', clients, answers);

    const refused = answers.filter((answer) => answer.status === 401);
    expect(refused.length).toBeGreaterThan(0);
    // Each of them: a token of the new key at a replica that only knows the old one.
    for (const answer of refused) expect(answer).toMatchObject({ replica: 'before', kid: NEW_KID });
  });
});

describe('key ids', () => {
  let client: Client;

  beforeAll(async () => {
    client = await signIn('staged', (await signUp('before')).email);
  });

  /** A token like the API's, signed with `secret`, naming `kid` (none: as before key ids). */
  async function forge(secret: string, kid: string | undefined): Promise<string> {
    const me = await call(apps.staged, 'get', '/api/v1/users/me', { token: client.accessToken });
    return new SignJWT({ role: 'student', sid: randomUUID() })
      .setProtectedHeader(kid === undefined ? { alg: 'HS256', typ: 'JWT' } : { alg: 'HS256', typ: 'JWT', kid })
      .setSubject(me.body.id as string)
      .setIssuer('lms-api')
      .setAudience('lms')
      .setIssuedAt()
      .setExpirationTime('5m')
      .sign(new TextEncoder().encode(secret));
  }

  const status = async (stage: Stage, token: string) =>
    (await call(apps[stage], 'get', '/api/v1/users/me', { token })).status;

  it('names the signing key in the header, never the key itself', () => {
    const header = decodeProtectedHeader(client.accessToken);
    expect(header).toEqual({ alg: 'HS256', typ: 'JWT', kid: OLD_KID });
    expect(OLD_KID).toMatch(/^[0-9a-f]{16}$/);
    expect(client.accessToken).not.toContain(OLD_KEY.slice(0, 16));
  });

  it('a token without a kid (issued before key ids) verifies with either configured key', async () => {
    const legacyOld = await forge(OLD_KEY, undefined);
    expect(await status('before', legacyOld)).toBe(200);
    expect(await status('staged', legacyOld)).toBe(200);
    expect(await status('switched', legacyOld)).toBe(200);
    expect(await status('retired', legacyOld)).toBe(401);
  });

  it('refuses a key that is neither, a kid that is not the key that signed, and a kid no replica holds', async () => {
    const stranger = randomBytes(32).toString('hex');
    expect(await status('switched', await forge(stranger, accessTokenKeyId(stranger)))).toBe(401);
    expect(await status('switched', await forge(stranger, undefined))).toBe(401);
    // The kid only picks the key; the signature must still be that key's.
    expect(await status('switched', await forge(stranger, OLD_KID))).toBe(401);
    expect(await status('switched', await forge(OLD_KEY, 'not-a-key-id'))).toBe(401);
    expect(await status('switched', await forge(OLD_KEY, OLD_KID))).toBe(200);
  });
});
