import { BlockList, isIP } from 'node:net';

/**
 * Addresses a webhook may not reach unless WEBHOOK_ALLOW_PRIVATE_TARGETS is set: a subscriber
 * could otherwise make the worker call internal services (metadata endpoints, databases, the
 * admin side of the stack) on its behalf. The API checks literal addresses when a subscription
 * is saved; the worker checks every address a name resolves to when it delivers.
 */
const forbidden = new BlockList();
// IPv4: "this network" and unspecified, RFC 1918, carrier-grade NAT, loopback, link-local
// (cloud metadata lives there), multicast and reserved, broadcast.
forbidden.addSubnet('0.0.0.0', 8, 'ipv4');
forbidden.addSubnet('10.0.0.0', 8, 'ipv4');
forbidden.addSubnet('100.64.0.0', 10, 'ipv4');
forbidden.addSubnet('127.0.0.0', 8, 'ipv4');
forbidden.addSubnet('169.254.0.0', 16, 'ipv4');
forbidden.addSubnet('172.16.0.0', 12, 'ipv4');
forbidden.addSubnet('192.168.0.0', 16, 'ipv4');
forbidden.addSubnet('198.18.0.0', 15, 'ipv4');
forbidden.addSubnet('224.0.0.0', 4, 'ipv4');
forbidden.addSubnet('240.0.0.0', 4, 'ipv4');
// IPv6: unspecified, loopback, NAT64 and 6to4 (they embed IPv4 addresses), unique-local
// (fc00::/7), link-local (fe80::/10), multicast.
forbidden.addAddress('::', 'ipv6');
forbidden.addAddress('::1', 'ipv6');
forbidden.addSubnet('64:ff9b::', 96, 'ipv6');
forbidden.addSubnet('2002::', 16, 'ipv6');
forbidden.addSubnet('fc00::', 7, 'ipv6');
forbidden.addSubnet('fe80::', 10, 'ipv6');
forbidden.addSubnet('ff00::', 8, 'ipv6');

/** The IPv4 address inside an IPv4-mapped IPv6 address (`::ffff:10.0.0.1`), if it is one. */
function mappedIPv4(address: string): string | undefined {
  const match = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  return match?.[1];
}

/** Why `address` is refused as a webhook target, or null when it is a public address. */
export function forbiddenAddressReason(address: string): string | null {
  const family = isIP(address);
  if (family === 0) return `"${address}" is not an IP address`;
  const v4 = family === 4 ? address : mappedIPv4(address);
  const refused = v4 ? forbidden.check(v4, 'ipv4') : forbidden.check(address, 'ipv6');
  return refused ? `${address} is a loopback, private, link-local, unspecified or multicast address` : null;
}
