import { isIP } from 'node:net';
import ipaddr from 'ipaddr.js';

/**
 * Addresses a webhook may not reach unless WEBHOOK_ALLOW_PRIVATE_TARGETS is set: a subscriber
 * could otherwise make the worker call internal services (metadata endpoints, databases, the
 * admin side of the stack) on its behalf. The API checks literal addresses and loopback names
 * when a subscription is saved; the worker checks every address a name resolves to when it
 * delivers. Both use this one policy.
 *
 * The policy: every block of the IANA IPv4 and IPv6 Special-Purpose Address Registries is
 * refused, plus multicast and, for IPv6, everything outside global unicast (2000::/3). The
 * registries mark a few blocks globally reachable (anycast services such as PCP, TURN, AS112,
 * AMT, ORCHIDv2); none of them is a web server a webhook should reach, so they are refused too
 * rather than carved out. The only special-purpose IPv6 forms that are allowed are those that
 * are how an IPv4 host is reached (IPv4-mapped and the NAT64 well-known prefix): they are judged
 * by the IPv4 address they embed.
 */

interface SpecialRange {
  cidr: string;
  /** Reads after "is": "192.0.2.1 is a documentation address". */
  name: string;
  rfc: string;
}

/** The IANA IPv4 Special-Purpose Address Registry, every entry, plus multicast. */
export const ipv4SpecialRanges: readonly SpecialRange[] = [
  { cidr: '0.0.0.0/8', name: 'a "this network" address', rfc: 'RFC 791' },
  { cidr: '0.0.0.0/32', name: 'the unspecified address', rfc: 'RFC 1122' },
  { cidr: '10.0.0.0/8', name: 'a private-use address', rfc: 'RFC 1918' },
  { cidr: '100.64.0.0/10', name: 'a shared (carrier-grade NAT) address', rfc: 'RFC 6598' },
  { cidr: '127.0.0.0/8', name: 'a loopback address', rfc: 'RFC 1122' },
  { cidr: '169.254.0.0/16', name: 'a link-local address', rfc: 'RFC 3927' },
  { cidr: '172.16.0.0/12', name: 'a private-use address', rfc: 'RFC 1918' },
  { cidr: '192.0.0.0/24', name: 'an IETF protocol assignment', rfc: 'RFC 6890' },
  { cidr: '192.0.0.0/29', name: 'an IPv4 service continuity address', rfc: 'RFC 7335' },
  { cidr: '192.0.0.8/32', name: 'the IPv4 dummy address', rfc: 'RFC 7600' },
  { cidr: '192.0.0.9/32', name: 'the Port Control Protocol anycast address', rfc: 'RFC 7723' },
  { cidr: '192.0.0.10/32', name: 'the TURN anycast address', rfc: 'RFC 8155' },
  { cidr: '192.0.0.170/32', name: 'a NAT64/DNS64 discovery address', rfc: 'RFC 8880' },
  { cidr: '192.0.0.171/32', name: 'a NAT64/DNS64 discovery address', rfc: 'RFC 8880' },
  { cidr: '192.0.2.0/24', name: 'a documentation address (TEST-NET-1)', rfc: 'RFC 5737' },
  { cidr: '192.31.196.0/24', name: 'an AS112 address', rfc: 'RFC 7535' },
  { cidr: '192.52.193.0/24', name: 'an AMT address', rfc: 'RFC 7450' },
  { cidr: '192.88.99.0/24', name: 'a deprecated 6to4 relay anycast address', rfc: 'RFC 7526' },
  { cidr: '192.168.0.0/16', name: 'a private-use address', rfc: 'RFC 1918' },
  { cidr: '192.175.48.0/24', name: 'an AS112 direct delegation address', rfc: 'RFC 7534' },
  { cidr: '198.18.0.0/15', name: 'a benchmarking address', rfc: 'RFC 2544' },
  { cidr: '198.51.100.0/24', name: 'a documentation address (TEST-NET-2)', rfc: 'RFC 5737' },
  { cidr: '203.0.113.0/24', name: 'a documentation address (TEST-NET-3)', rfc: 'RFC 5737' },
  // Not in the special-purpose registry (it has its own), but never a unicast receiver.
  { cidr: '224.0.0.0/4', name: 'a multicast address', rfc: 'RFC 5771' },
  { cidr: '240.0.0.0/4', name: 'a reserved address', rfc: 'RFC 1112' },
  { cidr: '255.255.255.255/32', name: 'the limited broadcast address', rfc: 'RFC 919' },
];

/** IPv4-mapped and NAT64 well-known-prefix addresses: judged by the IPv4 address they embed. */
const embeddingIPv4: readonly SpecialRange[] = [
  { cidr: '::ffff:0:0/96', name: 'an IPv4-mapped address', rfc: 'RFC 4291' },
  { cidr: '64:ff9b::/96', name: 'a NAT64 address', rfc: 'RFC 6052' },
];

/** The IANA IPv6 Special-Purpose Address Registry, every entry, plus the other non-global blocks. */
export const ipv6SpecialRanges: readonly SpecialRange[] = [
  { cidr: '::/128', name: 'the unspecified address', rfc: 'RFC 4291' },
  { cidr: '::1/128', name: 'a loopback address', rfc: 'RFC 4291' },
  // Deprecated, and refused whatever it embeds: nothing routes it any more.
  { cidr: '::/96', name: 'a deprecated IPv4-compatible address', rfc: 'RFC 4291' },
  { cidr: '::ffff:0:0:0/96', name: 'an IPv4-translated address', rfc: 'RFC 2765' },
  { cidr: '64:ff9b:1::/48', name: 'a local-use IPv4/IPv6 translation address', rfc: 'RFC 8215' },
  { cidr: '100::/64', name: 'a discard-only address', rfc: 'RFC 6666' },
  { cidr: '100:0:0:1::/64', name: 'a dummy IPv6 prefix address', rfc: 'RFC 9780' },
  { cidr: '2001::/23', name: 'an IETF protocol assignment', rfc: 'RFC 2928' },
  // Teredo tunnels to an IPv4 relay and an obfuscated client address: a way around the IPv4 checks.
  { cidr: '2001::/32', name: 'a Teredo address', rfc: 'RFC 4380' },
  { cidr: '2001:1::1/128', name: 'the Port Control Protocol anycast address', rfc: 'RFC 7723' },
  { cidr: '2001:1::2/128', name: 'the TURN anycast address', rfc: 'RFC 8155' },
  { cidr: '2001:1::3/128', name: 'the DNS-SD service registration anycast address', rfc: 'RFC 9665' },
  { cidr: '2001:2::/48', name: 'a benchmarking address', rfc: 'RFC 5180' },
  { cidr: '2001:3::/32', name: 'an AMT address', rfc: 'RFC 7450' },
  { cidr: '2001:4:112::/48', name: 'an AS112 address', rfc: 'RFC 7535' },
  { cidr: '2001:10::/28', name: 'a deprecated ORCHID address', rfc: 'RFC 4843' },
  { cidr: '2001:20::/28', name: 'an ORCHIDv2 address', rfc: 'RFC 7343' },
  { cidr: '2001:30::/28', name: 'a drone remote ID entity tag', rfc: 'RFC 9374' },
  { cidr: '2001:db8::/32', name: 'a documentation address', rfc: 'RFC 3849' },
  // 6to4 reaches the IPv4 host it embeds through whatever relay is nearest: refused as a whole.
  { cidr: '2002::/16', name: 'a 6to4 address', rfc: 'RFC 3056' },
  { cidr: '2620:4f:8000::/48', name: 'an AS112 direct delegation address', rfc: 'RFC 7534' },
  { cidr: '3fff::/20', name: 'a documentation address', rfc: 'RFC 9637' },
  { cidr: '5f00::/16', name: 'a segment routing (SRv6) SID', rfc: 'RFC 9602' },
  { cidr: 'fc00::/7', name: 'a unique-local address', rfc: 'RFC 4193' },
  { cidr: 'fe80::/10', name: 'a link-local address', rfc: 'RFC 4291' },
  { cidr: 'fec0::/10', name: 'a deprecated site-local address', rfc: 'RFC 3879' },
  { cidr: 'ff00::/8', name: 'a multicast address', rfc: 'RFC 4291' },
];

/** IANA allocates unicast addresses only from 2000::/3; the rest is reserved or special. */
const ipv6GlobalUnicast = ipaddr.parseCIDR('2000::/3');

interface ParsedRange extends SpecialRange {
  range: [ipaddr.IPv4 | ipaddr.IPv6, number];
}

/** Most specific first, so an address is named by the narrowest entry it falls in. */
function compile(ranges: readonly SpecialRange[]): ParsedRange[] {
  return ranges
    .map((entry) => ({ ...entry, range: ipaddr.parseCIDR(entry.cidr) }))
    .sort((a, b) => b.range[1] - a.range[1]);
}

const ipv4Ranges = compile(ipv4SpecialRanges);
const ipv6Ranges = compile(ipv6SpecialRanges);
const embeddingRanges = compile(embeddingIPv4);

function findRange(address: ipaddr.IPv4 | ipaddr.IPv6, ranges: ParsedRange[]): ParsedRange | undefined {
  return ranges.find((entry) => address.kind() === entry.range[0].kind() && address.match(entry.range));
}

function label(entry: ParsedRange): string {
  return `${entry.name} (${entry.cidr}, ${entry.rfc})`;
}

function ipv4Reason(address: ipaddr.IPv4): string | null {
  const entry = findRange(address, ipv4Ranges);
  return entry ? label(entry) : null;
}

function ipv6Reason(address: ipaddr.IPv6): string | null {
  const embedding = findRange(address, embeddingRanges);
  if (embedding) {
    const bytes = address.toByteArray().slice(12);
    const v4 = new ipaddr.IPv4(bytes);
    const inner = ipv4Reason(v4);
    return inner ? `${embedding.name} of ${v4.toString()}, ${inner}` : null;
  }
  const entry = findRange(address, ipv6Ranges);
  if (entry) return label(entry);
  if (!address.match(ipv6GlobalUnicast)) return 'outside global unicast space (2000::/3, RFC 4291)';
  return null;
}

/**
 * An IPv6 address with a dotted IPv4 tail rewritten in hex (`::1.2.3.4` → `::102:304`). ipaddr.js
 * reads `::a.b.c.d` as IPv4-mapped (`::ffff:a.b.c.d`), but sockets and RFC 4291 take it as
 * IPv4-compatible (`::a.b.c.d`): the address judged must be the address connected to.
 */
function hexTail(address: string): string {
  const match = /^(.*:)(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(address);
  if (!match) return address;
  const [a, b, c, d] = match.slice(2).map(Number) as [number, number, number, number];
  return `${match[1]}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
}

/**
 * Why `address` (a literal IPv4 or IPv6 address, as a resolver returns it) is refused as a
 * webhook target, or null when it is a public address. Never touches the network.
 */
export function forbiddenAddressReason(address: string): string | null {
  // Node's own parser decides what is a literal address, as the socket layer does; ipaddr.js
  // would also accept shorthand such as "127.1", which sockets resolve as a name instead.
  const family = isIP(address);
  if (family === 0) return `"${address}" is not an IP address`;
  const bare = address.replace(/%.*$/, '');
  const reason = family === 4 ? ipv4Reason(ipaddr.IPv4.parse(bare)) : ipv6Reason(ipaddr.IPv6.parse(hexTail(bare)));
  return reason ? `${address} is ${reason}` : null;
}

/**
 * A URL host as resolvers and the policy see it: without IPv6 brackets, lower case, without
 * trailing dots ("LocalHost." and "localhost" are the same name to a resolver).
 */
export function normaliseHost(host: string): string {
  return host
    .replace(/^\[(.*)\]$/, '$1')
    .toLowerCase()
    .replace(/\.+$/, '');
}

/**
 * Why the host of a webhook URL is refused before any lookup: a forbidden literal address, or a
 * name that always means this machine (`localhost` and `*.localhost`, RFC 6761). Other names are
 * allowed here; the worker checks every address they resolve to when it delivers.
 */
export function forbiddenHostReason(host: string): string | null {
  const bare = normaliseHost(host);
  if (isIP(bare) !== 0) return forbiddenAddressReason(bare);
  if (bare === 'localhost' || bare.endsWith('.localhost')) return `${bare} is a loopback name (RFC 6761)`;
  return null;
}
