import ipaddr from 'ipaddr.js';
import { describe, expect, it } from 'vitest';
import { forbiddenAddressReason, forbiddenHostReason, normaliseHost } from './webhook-targets.js';

// Decisions only: nothing here opens a connection. Each row is an address and the block that
// must be named in its refusal (the narrowest registry entry holding it), or 'allowed'. Rows
// are the first and last address of every registry entry and, where it is not special itself,
// the neighbour just outside.
const OUTSIDE_UNICAST = '2000::/3';

const ipv4: [string, string][] = [
  ['0.0.0.0', '0.0.0.0/32'],
  ['0.0.0.1', '0.0.0.0/8'],
  ['0.255.255.255', '0.0.0.0/8'],
  ['1.0.0.0', 'allowed'],
  ['9.255.255.255', 'allowed'],
  ['10.0.0.0', '10.0.0.0/8'],
  ['10.255.255.255', '10.0.0.0/8'],
  ['11.0.0.0', 'allowed'],
  ['100.63.255.255', 'allowed'],
  ['100.64.0.0', '100.64.0.0/10'],
  ['100.127.255.255', '100.64.0.0/10'],
  ['100.128.0.0', 'allowed'],
  ['126.255.255.255', 'allowed'],
  ['127.0.0.0', '127.0.0.0/8'],
  ['127.0.0.1', '127.0.0.0/8'],
  ['127.255.255.255', '127.0.0.0/8'],
  ['128.0.0.0', 'allowed'],
  ['169.253.255.255', 'allowed'],
  ['169.254.0.0', '169.254.0.0/16'],
  ['169.254.169.254', '169.254.0.0/16'],
  ['169.254.255.255', '169.254.0.0/16'],
  ['169.255.0.0', 'allowed'],
  ['172.15.255.255', 'allowed'],
  ['172.16.0.0', '172.16.0.0/12'],
  ['172.31.255.255', '172.16.0.0/12'],
  ['172.32.0.0', 'allowed'],
  ['191.255.255.255', 'allowed'],
  ['192.0.0.0', '192.0.0.0/29'],
  ['192.0.0.7', '192.0.0.0/29'],
  ['192.0.0.8', '192.0.0.8/32'],
  ['192.0.0.9', '192.0.0.9/32'],
  ['192.0.0.10', '192.0.0.10/32'],
  ['192.0.0.11', '192.0.0.0/24'],
  ['192.0.0.169', '192.0.0.0/24'],
  ['192.0.0.170', '192.0.0.170/32'],
  ['192.0.0.171', '192.0.0.171/32'],
  ['192.0.0.172', '192.0.0.0/24'],
  ['192.0.0.255', '192.0.0.0/24'],
  ['192.0.1.0', 'allowed'],
  ['192.0.1.255', 'allowed'],
  ['192.0.2.0', '192.0.2.0/24'],
  ['192.0.2.255', '192.0.2.0/24'],
  ['192.0.3.0', 'allowed'],
  ['192.31.195.255', 'allowed'],
  ['192.31.196.0', '192.31.196.0/24'],
  ['192.31.196.255', '192.31.196.0/24'],
  ['192.31.197.0', 'allowed'],
  ['192.52.192.255', 'allowed'],
  ['192.52.193.0', '192.52.193.0/24'],
  ['192.52.193.255', '192.52.193.0/24'],
  ['192.52.194.0', 'allowed'],
  ['192.88.98.255', 'allowed'],
  ['192.88.99.0', '192.88.99.0/24'],
  ['192.88.99.255', '192.88.99.0/24'],
  ['192.88.100.0', 'allowed'],
  ['192.167.255.255', 'allowed'],
  ['192.168.0.0', '192.168.0.0/16'],
  ['192.168.255.255', '192.168.0.0/16'],
  ['192.169.0.0', 'allowed'],
  ['192.175.47.255', 'allowed'],
  ['192.175.48.0', '192.175.48.0/24'],
  ['192.175.48.255', '192.175.48.0/24'],
  ['192.175.49.0', 'allowed'],
  ['198.17.255.255', 'allowed'],
  ['198.18.0.0', '198.18.0.0/15'],
  ['198.19.255.255', '198.18.0.0/15'],
  ['198.20.0.0', 'allowed'],
  ['198.51.99.255', 'allowed'],
  ['198.51.100.0', '198.51.100.0/24'],
  ['198.51.100.255', '198.51.100.0/24'],
  ['198.51.101.0', 'allowed'],
  ['203.0.112.255', 'allowed'],
  ['203.0.113.0', '203.0.113.0/24'],
  ['203.0.113.255', '203.0.113.0/24'],
  ['203.0.114.0', 'allowed'],
  ['223.255.255.255', 'allowed'],
  ['224.0.0.0', '224.0.0.0/4'],
  ['239.255.255.255', '224.0.0.0/4'],
  ['240.0.0.0', '240.0.0.0/4'],
  ['255.255.255.254', '240.0.0.0/4'],
  ['255.255.255.255', '255.255.255.255/32'],
  ['8.8.8.8', 'allowed'],
  ['93.184.216.34', 'allowed'],
];

const ipv6: [string, string][] = [
  ['::', '::/128'],
  ['::1', '::1/128'],
  // IPv4-compatible (deprecated): refused whatever it embeds.
  ['::2', '::/96'],
  ['::127.0.0.1', '::/96'],
  ['::8.8.8.8', '::/96'],
  ['::ffff:ffff', '::/96'],
  ['::1:0:0', OUTSIDE_UNICAST],
  // IPv4-mapped: the embedded IPv4 address decides.
  ['::fffe:ffff:ffff', OUTSIDE_UNICAST],
  ['::ffff:0.0.0.0', '0.0.0.0/32'],
  ['::ffff:127.0.0.1', '127.0.0.0/8'],
  ['::ffff:a9fe:a9fe', '169.254.0.0/16'],
  ['::ffff:192.0.0.9', '192.0.0.9/32'],
  ['::ffff:8.8.8.8', 'allowed'],
  ['::ffff:255.255.255.255', '255.255.255.255/32'],
  ['::1:0:0:0', OUTSIDE_UNICAST],
  ['::ffff:0:0:0', '::ffff:0:0:0/96'],
  ['::ffff:0:ffff:ffff', '::ffff:0:0:0/96'],
  // NAT64 well-known prefix: the embedded IPv4 address decides.
  ['64:ff9a:ffff:ffff:ffff:ffff:ffff:ffff', OUTSIDE_UNICAST],
  ['64:ff9b::', '0.0.0.0/32'],
  ['64:ff9b::127.0.0.1', '127.0.0.0/8'],
  ['64:ff9b::a9fe:a9fe', '169.254.0.0/16'],
  ['64:ff9b::192.0.0.171', '192.0.0.171/32'],
  ['64:ff9b::8.8.8.8', 'allowed'],
  ['64:ff9b::ffff:ffff', '255.255.255.255/32'],
  ['64:ff9b::1:0:0', OUTSIDE_UNICAST],
  ['64:ff9b:1::', '64:ff9b:1::/48'],
  ['64:ff9b:1::8.8.8.8', '64:ff9b:1::/48'],
  ['64:ff9b:1:ffff:ffff:ffff:ffff:ffff', '64:ff9b:1::/48'],
  ['64:ff9b:2::', OUTSIDE_UNICAST],
  ['ff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', OUTSIDE_UNICAST],
  ['100::', '100::/64'],
  ['100::ffff:ffff:ffff:ffff', '100::/64'],
  ['100:0:0:1::', '100:0:0:1::/64'],
  ['100:0:0:1:ffff:ffff:ffff:ffff', '100:0:0:1::/64'],
  ['100:0:0:2::', OUTSIDE_UNICAST],
  ['1fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', OUTSIDE_UNICAST],
  ['2000::', 'allowed'],
  ['2000:ffff:ffff:ffff:ffff:ffff:ffff:ffff', 'allowed'],
  ['2001::', '2001::/32'],
  ['2001:0:4136:e378:8000:63bf:3fff:fdd2', '2001::/32'],
  ['2001:0:ffff:ffff:ffff:ffff:ffff:ffff', '2001::/32'],
  ['2001:1::', '2001::/23'],
  ['2001:1::1', '2001:1::1/128'],
  ['2001:1::2', '2001:1::2/128'],
  ['2001:1::3', '2001:1::3/128'],
  ['2001:1::4', '2001::/23'],
  ['2001:2::', '2001:2::/48'],
  ['2001:2:0:ffff:ffff:ffff:ffff:ffff', '2001:2::/48'],
  ['2001:2:1::', '2001::/23'],
  ['2001:3::', '2001:3::/32'],
  ['2001:3:ffff:ffff:ffff:ffff:ffff:ffff', '2001:3::/32'],
  ['2001:4:111:ffff:ffff:ffff:ffff:ffff', '2001::/23'],
  ['2001:4:112::', '2001:4:112::/48'],
  ['2001:4:112:ffff:ffff:ffff:ffff:ffff', '2001:4:112::/48'],
  ['2001:4:113::', '2001::/23'],
  ['2001:10::', '2001:10::/28'],
  ['2001:1f:ffff:ffff:ffff:ffff:ffff:ffff', '2001:10::/28'],
  ['2001:20::', '2001:20::/28'],
  ['2001:2f:ffff:ffff:ffff:ffff:ffff:ffff', '2001:20::/28'],
  ['2001:30::', '2001:30::/28'],
  ['2001:3f:ffff:ffff:ffff:ffff:ffff:ffff', '2001:30::/28'],
  ['2001:40::', '2001::/23'],
  ['2001:1ff:ffff:ffff:ffff:ffff:ffff:ffff', '2001::/23'],
  ['2001:200::', 'allowed'],
  ['2001:db7:ffff:ffff:ffff:ffff:ffff:ffff', 'allowed'],
  ['2001:db8::', '2001:db8::/32'],
  ['2001:db8:ffff:ffff:ffff:ffff:ffff:ffff', '2001:db8::/32'],
  ['2001:db9::', 'allowed'],
  ['2001:ffff:ffff:ffff:ffff:ffff:ffff:ffff', 'allowed'],
  // 6to4: refused whatever it embeds.
  ['2002::', '2002::/16'],
  ['2002:7f00:1::1', '2002::/16'],
  ['2002:808:808::1', '2002::/16'],
  ['2002:ffff:ffff:ffff:ffff:ffff:ffff:ffff', '2002::/16'],
  ['2003::', 'allowed'],
  ['2620:4f:7fff:ffff:ffff:ffff:ffff:ffff', 'allowed'],
  ['2620:4f:8000::', '2620:4f:8000::/48'],
  ['2620:4f:8000:ffff:ffff:ffff:ffff:ffff', '2620:4f:8000::/48'],
  ['2620:4f:8001::', 'allowed'],
  ['3ffe:ffff:ffff:ffff:ffff:ffff:ffff:ffff', 'allowed'],
  ['3fff::', '3fff::/20'],
  ['3fff:fff:ffff:ffff:ffff:ffff:ffff:ffff', '3fff::/20'],
  ['3fff:1000::', 'allowed'],
  ['3fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', 'allowed'],
  ['4000::', OUTSIDE_UNICAST],
  ['5eff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', OUTSIDE_UNICAST],
  ['5f00::', '5f00::/16'],
  ['5f00:ffff:ffff:ffff:ffff:ffff:ffff:ffff', '5f00::/16'],
  ['5f01::', OUTSIDE_UNICAST],
  ['fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', OUTSIDE_UNICAST],
  ['fc00::', 'fc00::/7'],
  ['fd12:3456::1', 'fc00::/7'],
  ['fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', 'fc00::/7'],
  ['fe00::', OUTSIDE_UNICAST],
  ['fe7f:ffff:ffff:ffff:ffff:ffff:ffff:ffff', OUTSIDE_UNICAST],
  ['fe80::', 'fe80::/10'],
  ['fe80::1%eth0', 'fe80::/10'],
  ['febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff', 'fe80::/10'],
  ['fec0::', 'fec0::/10'],
  ['feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', 'fec0::/10'],
  ['ff00::', 'ff00::/8'],
  ['ff02::1', 'ff00::/8'],
  ['ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', 'ff00::/8'],
  ['2606:4700:4700::1111', 'allowed'],
  ['2a00:1450:4001:80b::200e', 'allowed'],
];

function expectDecision(address: string, expected: string): void {
  const reason = forbiddenAddressReason(address);
  if (expected === 'allowed') {
    expect(reason, address).toBeNull();
  } else {
    expect(reason, address).toContain(`(${expected}, `);
    expect(reason, address).toMatch(new RegExp(`^${address.replace(/\./g, '\\.')} is `));
  }
}

describe('the webhook address policy', () => {
  it.each(ipv4)('IPv4 special-purpose registry: %s → %s', expectDecision);

  it.each(ipv6)('IPv6 special-purpose registry: %s → %s', expectDecision);

  it('names the embedded IPv4 address when an IPv4-mapped or NAT64 address is refused', () => {
    expect(forbiddenAddressReason('::ffff:127.0.0.1')).toBe(
      '::ffff:127.0.0.1 is an IPv4-mapped address of 127.0.0.1, a loopback address (127.0.0.0/8, RFC 1122)',
    );
    expect(forbiddenAddressReason('64:ff9b::c000:aa')).toBe(
      '64:ff9b::c000:aa is a NAT64 address of 192.0.0.170, a NAT64/DNS64 discovery address (192.0.0.170/32, RFC 8880)',
    );
  });

  it('agrees with ipaddr.js: whatever it calls special is refused, unless it embeds a public IPv4 address', () => {
    const embedsIPv4 = new Set(['ipv4Mapped', 'rfc6052']);
    for (const [address, expected] of [...ipv4, ...ipv6]) {
      const range = ipaddr.parse(address).range();
      if (range === 'unicast') continue;
      if (expected === 'allowed') expect(embedsIPv4.has(range), `${address} (${range})`).toBe(true);
      else expect(forbiddenAddressReason(address), `${address} (${range})`).not.toBeNull();
    }
  });

  it('judges only what the socket layer takes as a literal address', () => {
    // "127.1" is a name to Node's sockets (resolved, then checked by the worker), not a literal.
    expect(forbiddenAddressReason('127.1')).toBe('"127.1" is not an IP address');
    expect(forbiddenAddressReason('example.com')).toBe('"example.com" is not an IP address');
  });
});

describe('webhook host names', () => {
  it.each([
    ['LocalHost.', 'localhost'],
    ['[::1]', '::1'],
    ['[::FFFF:7F00:1]', '::ffff:7f00:1'],
    ['Hooks.Example.COM..', 'hooks.example.com'],
    ['example.com', 'example.com'],
  ])('normalises %s to %s', (host, normalised) => {
    expect(normaliseHost(host)).toBe(normalised);
  });

  it.each(['localhost', 'localhost.', 'LOCALHOST', 'localhost..', 'api.localhost', 'A.B.Localhost.'])(
    'refuses the loopback name %s',
    (host) => {
      expect(forbiddenHostReason(host)).toMatch(/^[a-z.]*localhost is a loopback name \(RFC 6761\)$/);
    },
  );

  it.each([
    ['[::1]', '::1/128'],
    ['[::ffff:7f00:1]', '127.0.0.0/8'],
    ['127.0.0.1.', '127.0.0.0/8'],
    ['[64:ff9b:1::a00:1]', '64:ff9b:1::/48'],
    ['192.0.0.8', '192.0.0.8/32'],
  ])('refuses the literal address %s', (host, range) => {
    expect(forbiddenHostReason(host)).toContain(`(${range}, `);
  });

  it.each(['example.com', 'example.com.', 'localhost.example.com', 'mylocalhost', '8.8.8.8', '[2606:4700:4700::1111]'])(
    'leaves %s to the resolver check',
    (host) => {
      expect(forbiddenHostReason(host)).toBeNull();
    },
  );
});
