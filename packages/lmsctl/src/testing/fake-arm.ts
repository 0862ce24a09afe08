import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** One request the fake received, as the real SDK sent it. */
export interface FakeArmRequest {
  method: string;
  /** Path without the query string, as sent (percent-decoded). */
  path: string;
  query: Record<string, string>;
  /** Parsed JSON body, or undefined when there was none. */
  body: unknown;
  authorization: string | undefined;
  /** Date.now() when the request arrived. */
  at: number;
}

/** A canned answer for the next matching request (see {@link FakeArm.respond}). */
export interface FakeResponse {
  status: number;
  headers?: Record<string, string>;
  body?: unknown;
}

/** A flexible server in the fake's resource group. */
export interface FakeServerSpec {
  name: string;
  location?: string;
  version?: string;
  state?: string;
  administratorLogin?: string;
  backupRetentionDays?: number;
  /** ISO time; systemData.createdAt. */
  createdAt?: string;
  /** ISO time; properties.backup.earliestRestoreDate (omitted when unset). */
  earliestRestoreDate?: string;
  highAvailability?: { mode: string; state?: string };
  replicationRole?: string;
  replicationState?: string;
  /** For a read replica: the name of its primary. */
  primary?: string;
  backups?: Array<{ name: string; backupType: string; completedTime: string; source?: string }>;
  fqdn?: string;
}

interface FakeServer extends Required<Omit<FakeServerSpec, 'earliestRestoreDate' | 'primary' | 'replicationState'>> {
  earliestRestoreDate?: string;
  primary?: string;
  replicationState?: string;
  createMode?: string;
  pointInTimeUTC?: string;
  sourceServerResourceId?: string;
}

interface FakeOperation {
  polls: number;
  location: string;
  error?: { code: string; message: string };
  /** Applies the operation's outcome to the fake's state (once, when it succeeds). */
  apply(): void;
  done: boolean;
}

const PROVIDER = 'Microsoft.DBforPostgreSQL';

/**
 * A local HTTPS fake of the Azure Resource Manager endpoints that lmsctl's Azure commands use,
 * so the real `@azure/arm-postgresql-flexible` client is exercised end to end: flexible servers
 * (list, get, PUT as point-in-time restore, PATCH as replica promotion, DELETE), backups,
 * replicas and name availability, with long-running operations answered through
 * `Azure-AsyncOperation`. It records every request; tests assert on bodies and on what was
 * (not) sent. The TLS certificate is self-signed, made with openssl in a temporary folder at
 * start and deleted by {@link close}; nothing here ever reaches the network.
 */
export class FakeArm {
  readonly requests: FakeArmRequest[] = [];
  /** How many polls of an operation answer `InProgress` before its outcome. */
  pollsBeforeDone = 1;
  /** The FQDN a server created by a restore gets (a test points it at 127.0.0.1 to connect to it). */
  fqdnFor: (name: string) => string = (name) => `${name}.postgres.database.azure.com`;

  private readonly servers = new Map<string, FakeServer>();
  private readonly operations = new Map<string, FakeOperation>();
  private readonly canned: Array<{ method: string; path: RegExp; response: FakeResponse }> = [];
  private nextOperationError: { code: string; message: string } | undefined;
  private operationCount = 0;

  private constructor(
    private readonly server: https.Server,
    private readonly dir: string,
    /** The self-signed certificate (PEM), for the client's `tlsOptions.ca`. */
    readonly ca: string,
    /** The same certificate as a file (for LMS_AZURE_TEST_CA_FILE in end-to-end runs). */
    readonly caFile: string,
    readonly subscriptionId: string,
    readonly resourceGroup: string,
  ) {}

  /** Starts the fake on a free port of 127.0.0.1. */
  static async start(options: { resourceGroup?: string } = {}): Promise<FakeArm> {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'lms-fake-arm-'));
    const keyFile = path.join(dir, 'key.pem');
    const certFile = path.join(dir, 'cert.pem');
    await run('openssl', [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-keyout',
      keyFile,
      '-out',
      certFile,
      '-days',
      '2',
      '-subj',
      '/CN=localhost',
      '-addext',
      'subjectAltName=DNS:localhost,IP:127.0.0.1',
    ]);
    const [key, cert] = await Promise.all([readFile(keyFile, 'utf8'), readFile(certFile, 'utf8')]);
    const server = https.createServer({ key, cert });
    const fake = new FakeArm(server, dir, cert, certFile, randomUUID(), options.resourceGroup ?? 'rg-lms');
    server.on('request', (request: IncomingMessage, response: ServerResponse) => {
      let raw = '';
      request.on('data', (chunk: Buffer) => (raw += chunk.toString('utf8')));
      request.on('end', () => fake.handle(request, raw, response));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return fake;
  }

  /** https://127.0.0.1:PORT — the client's endpoint. */
  get url(): string {
    return `https://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  /** The ARM id of a server in the fake's resource group. */
  resourceId(name: string): string {
    return `/subscriptions/${this.subscriptionId}/resourceGroups/${this.resourceGroup}/providers/${PROVIDER}/flexibleServers/${name}`;
  }

  addServer(spec: FakeServerSpec): void {
    this.servers.set(spec.name, {
      location: 'westeurope',
      version: '16',
      state: 'Ready',
      administratorLogin: 'lmsadmin',
      backupRetentionDays: 7,
      createdAt: new Date(Date.now() - 90 * 86_400_000).toISOString(),
      highAvailability: { mode: 'Disabled' },
      replicationRole: 'Primary',
      backups: [],
      fqdn: `${spec.name}.postgres.database.azure.com`,
      ...spec,
    });
  }

  hasServer(name: string): boolean {
    return this.servers.has(name);
  }

  /** Answers the next requests matching `method` and `path` with `responses`, one each, in order. */
  respond(method: string, pathPattern: RegExp, ...responses: FakeResponse[]): void {
    for (const response of responses) this.canned.push({ method, path: pathPattern, response });
  }

  /** The next long-running operation ends `Failed` with this error. */
  failNextOperation(error: { code: string; message: string }): void {
    this.nextOperationError = error;
  }

  /** Requests that would change something in Azure (PUT, PATCH, DELETE). */
  mutations(): FakeArmRequest[] {
    return this.requests.filter((request) => ['PUT', 'PATCH', 'DELETE'].includes(request.method));
  }

  /** Requests other than polls of operations, as "METHOD path" (for asserting the sequence). */
  calls(): string[] {
    return this.requests
      .filter((request) => !/\/(azureAsyncOperation|operationResults)\//.test(request.path))
      .map((request) => `${request.method} ${request.path.replace(`/subscriptions/${this.subscriptionId}`, '')}`);
  }

  /** Polls of long-running operations received so far. */
  polls(): FakeArmRequest[] {
    return this.requests.filter((request) => /\/azureAsyncOperation\//.test(request.path));
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    await rm(this.dir, { recursive: true, force: true });
  }

  private handle(request: IncomingMessage, raw: string, response: ServerResponse) {
    const url = new URL(request.url ?? '/', this.url);
    const method = request.method ?? 'GET';
    const entry: FakeArmRequest = {
      method,
      path: decodeURIComponent(url.pathname),
      query: Object.fromEntries(url.searchParams),
      body: raw ? (JSON.parse(raw) as unknown) : undefined,
      authorization: request.headers.authorization,
      at: Date.now(),
    };
    this.requests.push(entry);
    const send = (answer: FakeResponse) => {
      const headers = { 'content-type': 'application/json; charset=utf-8', ...answer.headers };
      response.writeHead(answer.status, headers);
      response.end(answer.body === undefined ? '' : JSON.stringify(answer.body));
    };
    const cannedIndex = this.canned.findIndex((item) => item.method === method && item.path.test(entry.path));
    if (cannedIndex >= 0) {
      send(this.canned.splice(cannedIndex, 1)[0]!.response);
      return;
    }
    send(this.route(method, entry));
  }

  private route(method: string, request: FakeArmRequest): FakeResponse {
    const segments = request.path.split('/').filter(Boolean);
    // /subscriptions/{s}/providers/Microsoft.DBforPostgreSQL/locations/{l}/azureAsyncOperation/{id}
    const operation = /\/(?:azureAsyncOperation|operationResults)\/([^/]+)$/.exec(request.path);
    if (operation && method === 'GET') return this.pollOperation(operation[1]!);
    if (segments[0] !== 'subscriptions' || segments[1] !== this.subscriptionId) {
      return armError(404, 'SubscriptionNotFound', `The subscription '${segments[1]}' could not be found.`);
    }
    if (segments[2] === 'providers' && segments.at(-1) === 'checkNameAvailability' && method === 'POST') {
      const name = (request.body as { name?: string }).name ?? '';
      const taken = this.servers.has(name);
      return {
        status: 200,
        body: taken
          ? { nameAvailable: false, reason: 'AlreadyExists', message: `Specified server name is already used.` }
          : { nameAvailable: true },
      };
    }
    if (segments[2]?.toLowerCase() !== 'resourcegroups') return armError(400, 'BadRequest', 'unknown route');
    if (segments[3] !== this.resourceGroup) {
      return armError(404, 'ResourceGroupNotFound', `Resource group '${segments[3]}' could not be found.`);
    }
    const rest = segments.slice(4);
    if (rest[0] !== 'providers' || rest[1] !== PROVIDER || rest[2] !== 'flexibleServers') {
      return armError(400, 'BadRequest', 'unknown route');
    }
    const name = rest[3];
    if (name === undefined) {
      if (method !== 'GET') return armError(405, 'MethodNotAllowed', 'not allowed');
      return { status: 200, body: { value: [...this.servers.values()].map((server) => this.serverJson(server)) } };
    }
    const server = this.servers.get(name);
    const notFound = () =>
      armError(
        404,
        'ResourceNotFound',
        `The Resource '${PROVIDER}/flexibleServers/${name}' under resource group '${this.resourceGroup}' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix`,
      );
    if (rest[4] === 'backups' && method === 'GET') {
      if (!server) return notFound();
      return {
        status: 200,
        body: {
          value: server.backups.map((backup) => ({
            id: `${this.resourceId(name)}/backups/${backup.name}`,
            name: backup.name,
            type: `${PROVIDER}/flexibleServers/backups`,
            properties: { backupType: backup.backupType, completedTime: backup.completedTime, source: backup.source },
          })),
        },
      };
    }
    if (rest[4] === 'replicas' && method === 'GET') {
      if (!server) return notFound();
      const replicas = [...this.servers.values()].filter((candidate) => candidate.primary === name);
      return { status: 200, body: { value: replicas.map((replica) => this.serverJson(replica)) } };
    }
    if (rest.length !== 4) return armError(400, 'BadRequest', 'unknown route');
    switch (method) {
      case 'GET':
        return server ? { status: 200, body: this.serverJson(server) } : notFound();
      case 'PUT':
        return this.create(name, request.body as ServerBody);
      case 'PATCH':
        return server ? this.update(server, request.body as ServerBody) : notFound();
      case 'DELETE':
        return server ? this.remove(server) : { status: 204 };
      default:
        return armError(405, 'MethodNotAllowed', 'not allowed');
    }
  }

  private create(name: string, body: ServerBody): FakeResponse {
    const properties = body.properties ?? {};
    const sourceName = properties.sourceServerResourceId?.split('/').at(-1);
    const source = sourceName === undefined ? undefined : this.servers.get(sourceName);
    const server: FakeServer = {
      ...(source ?? {
        version: '16',
        administratorLogin: 'lmsadmin',
        backupRetentionDays: 7,
        highAvailability: { mode: 'Disabled' },
        backups: [],
      }),
      name,
      location: body.location ?? source?.location ?? 'westeurope',
      state: 'Provisioning',
      createdAt: new Date().toISOString(),
      replicationRole: 'None',
      backups: [],
      fqdn: this.fqdnFor(name),
      createMode: properties.createMode,
      pointInTimeUTC: properties.pointInTimeUTC,
      sourceServerResourceId: properties.sourceServerResourceId,
    };
    delete server.primary;
    delete server.replicationState;
    delete server.earliestRestoreDate;
    this.servers.set(name, server);
    const location = this.startOperation(server.location, () => {
      server.state = 'Ready';
    });
    return { status: 201, headers: { 'Azure-AsyncOperation': location }, body: this.serverJson(server) };
  }

  private update(server: FakeServer, body: ServerBody): FakeResponse {
    const replica = body.properties?.replica;
    server.state = 'Updating';
    const location = this.startOperation(server.location, () => {
      server.state = 'Ready';
      if (!replica?.promoteMode) return;
      const primary = server.primary === undefined ? undefined : this.servers.get(server.primary);
      delete server.primary;
      delete server.replicationState;
      if (replica.promoteMode === 'Switchover' && primary) {
        server.replicationRole = 'Primary';
        primary.replicationRole = 'AsyncReplica';
        primary.primary = server.name;
        primary.replicationState = 'Active';
      } else {
        server.replicationRole = 'None';
      }
    });
    return {
      status: 202,
      headers: {
        'Azure-AsyncOperation': location,
        Location: location.replace('azureAsyncOperation', 'operationResults'),
      },
    };
  }

  private remove(server: FakeServer): FakeResponse {
    server.state = 'Dropping';
    const location = this.startOperation(server.location, () => {
      this.servers.delete(server.name);
    });
    return {
      status: 202,
      headers: {
        'Azure-AsyncOperation': location,
        Location: location.replace('azureAsyncOperation', 'operationResults'),
      },
    };
  }

  private startOperation(location: string, apply: () => void): string {
    const id = `op-${++this.operationCount}`;
    const error = this.nextOperationError;
    this.nextOperationError = undefined;
    this.operations.set(id, { polls: 0, location, error, apply, done: false });
    return `${this.url}/subscriptions/${this.subscriptionId}/providers/${PROVIDER}/locations/${location}/azureAsyncOperation/${id}?api-version=2025-08-01`;
  }

  private pollOperation(id: string): FakeResponse {
    const operation = this.operations.get(id);
    if (!operation) return armError(404, 'OperationNotFound', `operation ${id} not found`);
    operation.polls++;
    const base = { name: id, startTime: new Date().toISOString() };
    if (operation.polls <= this.pollsBeforeDone) return { status: 200, body: { ...base, status: 'InProgress' } };
    if (operation.error) return { status: 200, body: { ...base, status: 'Failed', error: operation.error } };
    if (!operation.done) {
      operation.done = true;
      operation.apply();
    }
    return { status: 200, body: { ...base, status: 'Succeeded' } };
  }

  private serverJson(server: FakeServer): unknown {
    return {
      id: this.resourceId(server.name),
      name: server.name,
      type: `${PROVIDER}/flexibleServers`,
      location: server.location,
      systemData: { createdAt: server.createdAt },
      sku: { name: 'Standard_D2ds_v5', tier: 'GeneralPurpose' },
      properties: {
        administratorLogin: server.administratorLogin,
        version: server.version,
        state: server.state,
        fullyQualifiedDomainName: server.fqdn,
        backup: {
          backupRetentionDays: server.backupRetentionDays,
          geoRedundantBackup: 'Disabled',
          ...(server.earliestRestoreDate ? { earliestRestoreDate: server.earliestRestoreDate } : {}),
        },
        highAvailability: server.highAvailability,
        replicationRole: server.replicationRole,
        replica: { role: server.replicationRole, capacity: 5, replicationState: server.replicationState },
        ...(server.primary ? { sourceServerResourceId: this.resourceId(server.primary) } : {}),
        ...(server.sourceServerResourceId && !server.primary
          ? { sourceServerResourceId: server.sourceServerResourceId }
          : {}),
      },
    };
  }
}

interface ServerBody {
  location?: string;
  properties?: {
    createMode?: string;
    pointInTimeUTC?: string;
    sourceServerResourceId?: string;
    replica?: { promoteMode?: string; promoteOption?: string };
  };
}

/** An ARM error response, shaped as the service sends it. */
export function armError(
  status: number,
  code: string,
  message: string,
  headers?: Record<string, string>,
): FakeResponse {
  return { status, headers, body: { error: { code, message } } };
}

/** A credential for tests: never talks to an identity endpoint. */
export const fakeCredential = {
  getToken: () => Promise.resolve({ token: 'fake-token', expiresOnTimestamp: Date.now() + 3600e3 }),
};

/**
 * A folder holding a fake `az` for end-to-end runs with `--credential cli`: put it first on
 * PATH. `signedIn` prints a token the way `az account get-access-token` does; otherwise it
 * answers as the real CLI does before `az login`. Either way it appends its arguments to
 * `az.log` in the folder.
 */
export async function fakeAzCli(options: { signedIn: boolean; token?: string }): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'lms-fake-az-'));
  const token = JSON.stringify({
    accessToken: options.token ?? 'cli-token',
    expiresOn: '2099-01-01 00:00:00.000000',
    expires_on: 4070908800,
    tokenType: 'Bearer',
  });
  const answer = options.signedIn
    ? `printf '%s\\n' '${token}'`
    : `echo "ERROR: Please run 'az login' to setup account." >&2; exit 1`;
  const file = path.join(dir, 'az');
  await writeFile(file, `#!/bin/sh\necho "$*" >> '${path.join(dir, 'az.log')}'\n${answer}\n`);
  await chmod(file, 0o755);
  return dir;
}
