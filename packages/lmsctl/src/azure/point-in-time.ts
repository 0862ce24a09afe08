import type { Server } from '@azure/arm-postgresql-flexible';
import { usageError } from '../errors.js';
import { type AzureSession } from './client.js';
import { restoreWindowOf, serverNameProblem, type OperationPoller, type RestoreWindow } from './server-facts.js';

/** A point-in-time restore into a new server: the checks before it, the plan, the started create. Shared by `azure pitr` and `azure pitr-drill`. */

/** What a point-in-time restore needs, besides where it happens. */
export interface RestoreRequest {
  /** The source server. */
  server: string;
  restoreTime: Date;
  /** The new server to create; must not exist. */
  targetServer: string;
  /** Region of the new server (default: the source's). */
  location?: string;
}

export const ISO = (date: Date) => date.toISOString();

/** Checks that need no request: the time is not in the future, the target name is valid and new. */
export function checkRequest(request: RestoreRequest, now: Date): void {
  if (Number.isNaN(request.restoreTime.getTime())) throw usageError('the restore time is not a valid time');
  if (request.restoreTime.getTime() > now.getTime()) {
    throw usageError(
      `restore time ${ISO(request.restoreTime)} is in the future (it is now ${ISO(now)})`,
      'give a past time in UTC, e.g. --restore-time 2026-11-28T09:30:00Z',
    );
  }
  const problem = serverNameProblem(request.targetServer);
  if (problem) {
    throw usageError(
      `target server name "${request.targetServer}" is invalid: it ${problem}`,
      'e.g. --target-server prod-pg-restore-1128',
    );
  }
  if (request.targetServer === request.server) {
    throw usageError('the target server must be a new server, not the source', 'give a new --target-server name');
  }
  if (request.location !== undefined && !/^[a-z0-9]+$/i.test(request.location)) {
    throw usageError(`"${request.location}" is not an Azure region name`, 'e.g. --location westeurope');
  }
}

export interface PitrPlan {
  source: Server;
  sourceId: string;
  window: RestoreWindow;
  location: string;
  body: Server;
}

export const isStatus = (error: unknown, status: number) => (error as { statusCode?: number }).statusCode === status;

/**
 * The checks that read Azure before anything is created: the source exists, the time lies in
 * its restore window, and the target name is free in the resource group and across Azure
 * (server names are DNS names). Failures are usage errors (exit 2); only GETs and the
 * name-availability POST are sent.
 */
export async function planRestore(azure: AzureSession, request: RestoreRequest, now: Date): Promise<PitrPlan> {
  const { client, scope } = azure;
  const source = await client.servers.get(scope.resourceGroup, request.server);
  const window = restoreWindowOf(source, now);
  if (request.restoreTime.getTime() < window.earliest.getTime()) {
    throw usageError(
      `restore time ${ISO(request.restoreTime)} is before the earliest restore point of ${request.server}, ${ISO(window.earliest)} (backups are kept ${window.retentionDays} days)`,
      `choose a time from ${ISO(window.earliest)} to now; \`lmsctl azure backups --server ${request.server}\` shows the window`,
    );
  }
  const taken = await client.servers.get(scope.resourceGroup, request.targetServer).then(
    () => true,
    (error: unknown) => {
      if (isStatus(error, 404)) return false;
      throw error;
    },
  );
  if (taken) {
    throw usageError(
      `server ${request.targetServer} already exists in resource group ${scope.resourceGroup}`,
      'choose another --target-server; a restore always creates a new server',
    );
  }
  const availability = await client.nameAvailability
    .checkGlobally({ name: request.targetServer, type: 'Microsoft.DBforPostgreSQL/flexibleServers' })
    // Roles scoped to a resource group may not allow this subscription-level check; the create
    // itself then reports a taken name (409).
    .catch((error: unknown) => {
      if (isStatus(error, 403)) return null;
      throw error;
    });
  if (availability?.nameAvailable === false) {
    throw usageError(
      `server name ${request.targetServer} is not available: ${availability.message ?? availability.reason ?? 'taken'}`,
      'choose another --target-server (server names are unique across Azure)',
    );
  }
  const sourceId = source.id ?? azure.serverId(request.server);
  const location = request.location ?? source.location;
  return {
    source,
    sourceId,
    window,
    location,
    body: {
      location,
      createMode: 'PointInTimeRestore',
      sourceServerResourceId: sourceId,
      pointInTimeUTC: request.restoreTime,
    },
  };
}

/** The started create: its poller, and whether (and where) Azure accepted it. */
export interface StartedRestore {
  poller: OperationPoller<Server>;
  accepted: { yes: boolean; operationUrl: string | null };
}

/**
 * Sends the PointInTimeRestore create. `accepted` turns true once Azure answered the PUT with
 * success — from then on a server exists that a drill must delete, also if polling fails.
 */
export async function startRestore(
  azure: AzureSession,
  target: string,
  body: Server,
  accepted: StartedRestore['accepted'],
): Promise<StartedRestore> {
  const poller = await azure.client.servers.beginCreateOrUpdate(azure.scope.resourceGroup, target, body, {
    ...azure.lroOptions,
    onResponse: (raw) => {
      if (raw.request.method === 'PUT' && raw.status < 300) {
        accepted.yes = true;
        accepted.operationUrl = raw.headers.get('azure-asyncoperation') ?? raw.headers.get('location') ?? null;
      }
    },
  });
  return { poller, accepted };
}
