import { errorMessage } from '@lms/core';
import { readFileSync } from 'node:fs';
import type { PostgreSQLManagementFlexibleServerClient } from '@azure/arm-postgresql-flexible';
import type { TokenCredential } from '@azure/identity';
import type { CommandContext } from '../context.js';
import { CliError, ExitCode, usageError } from '../errors.js';
import { lmsctlVersion } from '../version.js';

/** The `--credential` choices: how lmsctl signs in to Azure. */
export const AZURE_CREDENTIALS = ['default', 'cli', 'environment', 'managed-identity'] as const;
export type AzureCredentialKind = (typeof AZURE_CREDENTIALS)[number];

/** Where, and as whom, an Azure command works; every `lmsctl azure` command takes these. */
export interface AzureConnectionOptions {
  /** `--subscription`, else AZURE_SUBSCRIPTION_ID. */
  subscription?: string;
  /** `--resource-group`, else AZURE_RESOURCE_GROUP. */
  resourceGroup?: string;
  /** `--credential` (default `default`: DefaultAzureCredential). */
  credential?: AzureCredentialKind;
  /** `--arm-endpoint`, else AZURE_ARM_ENDPOINT (sovereign clouds). */
  armEndpoint?: string;
  /** Test seam for in-process tests; never set in production. */
  testing?: AzureTestSeam;
}

/**
 * What in-process tests inject so the real SDK talks to a local HTTPS fake of Resource Manager
 * and no credential ever reaches an identity endpoint. End-to-end runs of the binary use the
 * test-only LMS_AZURE_TEST_CA_FILE variable (the fake's self-signed certificate) instead, with a
 * fake `az` on PATH behind `--credential cli`.
 */
export interface AzureTestSeam {
  credential: TokenCredential;
  /** PEM of the fake's self-signed certificate. */
  ca: string;
  /** Poll interval of long-running operations (the SDK's default is 2 s or the service's Retry-After). */
  pollIntervalMs?: number;
  /** First delay of the retries after network errors and 5xx (the SDK's default is 1 s, doubling). */
  retryDelayMs?: number;
}

/** The validated target of an Azure command. */
export interface AzureScope {
  subscriptionId: string;
  resourceGroup: string;
  /** Resource Manager endpoint without a trailing slash. */
  armEndpoint: string;
  credential: AzureCredentialKind;
}

/** A connected client with what commands need to call it. */
export interface AzureSession {
  scope: AzureScope;
  client: PostgreSQLManagementFlexibleServerClient;
  /** Options for `begin…` calls: the poll interval (tests poll fast). */
  lroOptions: { updateIntervalInMs?: number };
  /** The ARM resource id of a flexible server in the scope's resource group. */
  serverId(name: string): string;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
// Azure's rule for resource group names: letters, digits, _ - . ( ), 1–90 long, no trailing dot.
const RESOURCE_GROUP = /^[-\w.()]{1,90}$/;

/** True for an Azure subscription id (a UUID). */
export function isSubscriptionId(value: string): boolean {
  return UUID.test(value);
}

/**
 * Resolves subscription, resource group, endpoint and credential from the flags and the
 * configuration. Only usage errors (exit 2), and no request: a missing or malformed value is
 * caught before anything talks to Azure.
 */
export function resolveAzureScope(ctx: CommandContext, options: AzureConnectionOptions): AzureScope {
  const subscriptionId = options.subscription ?? ctx.config.AZURE_SUBSCRIPTION_ID;
  if (!subscriptionId) {
    throw usageError(
      'no Azure subscription given',
      'pass --subscription <id> or set AZURE_SUBSCRIPTION_ID (`az account show --query id -o tsv` prints yours)',
    );
  }
  if (!isSubscriptionId(subscriptionId)) {
    throw usageError(
      `subscription "${subscriptionId}" is not a subscription id (a UUID)`,
      '`az account list -o table`',
    );
  }
  const resourceGroup = options.resourceGroup ?? ctx.config.AZURE_RESOURCE_GROUP;
  if (!resourceGroup) {
    throw usageError(
      'no resource group given',
      'pass --resource-group <name> or set AZURE_RESOURCE_GROUP (`az group list -o table` lists them)',
    );
  }
  if (!RESOURCE_GROUP.test(resourceGroup) || resourceGroup.endsWith('.')) {
    throw usageError(`"${resourceGroup}" is not a valid resource group name`);
  }
  const endpoint = options.armEndpoint ?? ctx.config.AZURE_ARM_ENDPOINT;
  if (!/^https:\/\//i.test(endpoint) || !URL.canParse(endpoint)) {
    throw usageError(`--arm-endpoint must be an https:// URL, not "${endpoint}"`);
  }
  return {
    subscriptionId,
    resourceGroup,
    armEndpoint: endpoint.replace(/\/+$/, ''),
    credential: options.credential ?? 'default',
  };
}

/**
 * Creates the Flexible Server client for a scope. The SDK and @azure/identity are imported
 * here, when a command runs, never for `--help`. Throttled requests (429 with Retry-After) are
 * retried by the SDK's pipeline after the time the service asks for.
 */
export async function connectAzure(
  ctx: CommandContext,
  scope: AzureScope,
  seam?: AzureTestSeam,
): Promise<AzureSession> {
  const { PostgreSQLManagementFlexibleServerClient } = await import('@azure/arm-postgresql-flexible');
  const credential = seam?.credential ?? (await createCredential(ctx, scope.credential));
  const ca = seam?.ca ?? testCaOf(ctx);
  const client = new PostgreSQLManagementFlexibleServerClient(credential, scope.subscriptionId, {
    endpoint: scope.armEndpoint,
    // The token is for the cloud's Resource Manager (…/.default), also in sovereign clouds.
    credentialScopes: [`${scope.armEndpoint}/.default`],
    ...(ca ? { tlsOptions: { ca } } : {}),
    retryOptions: {
      maxRetries: 4,
      ...(seam?.retryDelayMs === undefined
        ? {}
        : { retryDelayInMs: seam.retryDelayMs, maxRetryDelayInMs: seam.retryDelayMs }),
    },
    userAgentOptions: { userAgentPrefix: `lmsctl/${lmsctlVersion}` },
  });
  return {
    scope,
    client,
    lroOptions: seam?.pollIntervalMs === undefined ? {} : { updateIntervalInMs: seam.pollIntervalMs },
    serverId: (name) =>
      `/subscriptions/${scope.subscriptionId}/resourceGroups/${scope.resourceGroup}/providers/Microsoft.DBforPostgreSQL/flexibleServers/${name}`,
  };
}

/**
 * The CA of a local fake of Resource Manager, from LMS_AZURE_TEST_CA_FILE — for end-to-end
 * tests of the binary only; production trusts the system's CAs (NODE_EXTRA_CA_CERTS adds more).
 */
function testCaOf(ctx: CommandContext): string | undefined {
  const file = ctx.config.LMS_AZURE_TEST_CA_FILE;
  if (!file) return undefined;
  try {
    return readFileSync(file, 'utf8');
  } catch (error) {
    throw usageError(`cannot read LMS_AZURE_TEST_CA_FILE ${file}: ${errorMessage(error)}`, 'unset it outside tests');
  }
}

async function createCredential(ctx: CommandContext, kind: AzureCredentialKind): Promise<TokenCredential> {
  const identity = await import('@azure/identity');
  const authorityHost = ctx.config.AZURE_AUTHORITY_HOST;
  switch (kind) {
    case 'cli':
      return new identity.AzureCliCredential();
    case 'environment':
      return new identity.EnvironmentCredential(authorityHost ? { authorityHost } : {});
    case 'managed-identity':
      // A user-assigned identity is named by AZURE_CLIENT_ID, as DefaultAzureCredential does.
      return ctx.config.AZURE_CLIENT_ID
        ? new identity.ManagedIdentityCredential({ clientId: ctx.config.AZURE_CLIENT_ID })
        : new identity.ManagedIdentityCredential();
    case 'default':
      return new identity.DefaultAzureCredential(authorityHost ? { authorityHost } : {});
  }
}

interface AzureErrorLike {
  name?: string;
  message?: string;
  statusCode?: number;
  code?: string;
  request?: { url?: string; method?: string };
  response?: { headers?: { get(name: string): string | undefined } };
}

const CREDENTIAL_ERRORS = new Set([
  'CredentialUnavailableError',
  'AggregateAuthenticationError',
  'AuthenticationRequiredError',
  'AuthenticationError',
]);
const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ENOTFOUND',
  'ETIMEDOUT',
  'EAI_AGAIN',
  'REQUEST_SEND_ERROR',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'CERT_HAS_EXPIRED',
]);
const SIGN_IN_HINT =
  'run `az login` (and `az account set --subscription …`), or set AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET for a service principal';
const OPERATION_FAILED = /^The long-running operation has failed\.?\s*(?:([\w.-]+)\.\s+)?([\s\S]*)$/;

/** "server prod-pg in resource group rg-lms", or what else the request URL names. */
function resourceOf(url: string | undefined, scope: AzureScope): { server?: string; description: string } {
  const match =
    url && URL.canParse(url)
      ? /\/resourceGroups\/([^/?]+)(?:\/providers\/Microsoft\.DBforPostgreSQL\/flexibleServers\/([^/?]+))?/i.exec(
          decodeURIComponent(new URL(url).pathname),
        )
      : null;
  if (match?.[2]) return { server: match[2], description: `server ${match[2]} in resource group ${match[1]}` };
  if (match?.[1]) return { description: `resource group ${match[1]}` };
  return { description: `subscription ${scope.subscriptionId}` };
}

const VERBS: Record<string, string> = { GET: 'read', PUT: 'create', PATCH: 'update', DELETE: 'delete', POST: 'use' };

/** The first line of a service message (ARM messages can run on with links and ids). */
const firstLine = (text: string | undefined) => (text ?? '').split('\n')[0]!.trim();

/**
 * Turns what the SDK and @azure/identity throw into one clear line with a hint (exit 1):
 * not signed in, no permission (403), not found (404), already exists (409), throttled (429),
 * a failed operation (the service's message), Resource Manager unreachable. Anything else —
 * including lmsctl's own CliErrors — is returned unchanged.
 */
export function translateAzureError(error: unknown, scope: AzureScope): unknown {
  if (error instanceof CliError || typeof error !== 'object' || error === null) return error;
  const err = error as AzureErrorLike;
  const failed = (message: string, hint?: string) => new CliError(ExitCode.failed, message, hint);

  if (err.name && CREDENTIAL_ERRORS.has(err.name)) {
    return failed(
      `not signed in to Azure (--credential ${scope.credential}): ${SIGN_IN_HINT}`,
      firstLine(err.message) || undefined,
    );
  }
  const operation = err.name !== 'RestError' ? OPERATION_FAILED.exec(err.message ?? '') : null;
  if (operation) {
    const [, code, message] = operation;
    return failed(
      `Azure operation failed: ${firstLine(message) || 'no reason given'}${code ? ` (${code})` : ''}`,
      '`lmsctl azure servers` shows the server states; the activity log in the Azure portal has the details',
    );
  }
  if (err.name !== 'RestError') return error;

  const resource = resourceOf(err.request?.url, scope);
  const method = err.request?.method?.toUpperCase() ?? 'GET';
  const detail = firstLine(err.message);
  switch (err.statusCode) {
    case undefined:
      if (err.code && NETWORK_CODES.has(err.code)) {
        return failed(
          `cannot reach Azure Resource Manager at ${scope.armEndpoint}: ${detail || err.code}`,
          'check the network (and a proxy: HTTPS_PROXY), or --arm-endpoint / AZURE_ARM_ENDPOINT',
        );
      }
      return error;
    case 401:
      return failed(`Azure Resource Manager rejected the credential (401): ${SIGN_IN_HINT}`, detail || undefined);
    case 403:
      return failed(
        `no permission to ${VERBS[method] ?? 'use'} ${resource.description} (403 ${err.code ?? 'Forbidden'})`,
        `ask for a role that allows it (e.g. Contributor on resource group ${scope.resourceGroup}), or check --subscription`,
      );
    case 404:
      if (err.code === 'ResourceGroupNotFound') {
        return failed(
          `resource group ${scope.resourceGroup} not found in subscription ${scope.subscriptionId}`,
          'check --resource-group and --subscription (`az group list -o table`)',
        );
      }
      if (err.code === 'SubscriptionNotFound') {
        return failed(
          `subscription ${scope.subscriptionId} not found`,
          'check --subscription (`az account list -o table`)',
        );
      }
      if (resource.server) {
        return failed(
          `server ${resource.server} not found in resource group ${scope.resourceGroup}`,
          '`lmsctl azure servers` lists the servers of the resource group',
        );
      }
      return failed(`not found: ${detail}`);
    case 409:
      if (method === 'PUT' && resource.server) {
        return failed(
          `cannot create server ${resource.server}: it already exists or is being created (${detail})`,
          'choose another --target-server',
        );
      }
      return failed(
        `${resource.description} is busy or in conflict: ${detail}`,
        'another operation may be running on it; `lmsctl azure servers` shows its state',
      );
    case 429: {
      const retryAfter = err.response?.headers?.get('retry-after');
      return failed(
        'Azure Resource Manager is throttling requests (429) and the retries ran out',
        `wait ${retryAfter ? `${retryAfter} s` : 'a minute'} and run the command again`,
      );
    }
    default:
      return failed(
        `Azure Resource Manager: ${detail || 'request failed'} (HTTP ${err.statusCode}${err.code ? ` ${err.code}` : ''})`,
      );
  }
}

/** Runs `work`, rethrowing Azure errors as one-line CliErrors (see {@link translateAzureError}). */
export async function withAzureErrors<T>(scope: AzureScope, work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    throw translateAzureError(error, scope);
  }
}
