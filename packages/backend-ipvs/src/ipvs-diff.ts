// The IPVS part of a sync: compare the desired virtual services with what the kernel lists
// (read once per sync) and write only the differences into one ipvsadm --restore payload.
// Removed real servers drain gracefully, as upstream's graceful termination manager does.

import {
  IpvsadmRestoreWriter,
  ipvsHostPort,
  sameServiceSettings,
  virtualServerKey,
  type IpvsRealServer,
  type IpvsServiceListing,
  type IpvsVirtualServer,
} from '@kube-proxy-ts/netfilter';
import type { DesiredVirtualService } from './desired.js';

/** A real server that was removed but still carries connections: weight 0 until they end. */
export interface DrainingRealServer {
  readonly service: IpvsVirtualServer;
  readonly address: string;
  readonly port: number;
}

/** `TCP/10.0.0.1:80/10.1.0.1:8080`: one real server of one virtual service. */
export function realServerKey(service: Pick<IpvsVirtualServer, 'protocol' | 'address' | 'port'>, address: string, port: number): string {
  return `${virtualServerKey(service)}/${ipvsHostPort(address, port)}`;
}

export interface IpvsDiffInput {
  readonly desired: ReadonlyMap<string, DesiredVirtualService>;
  readonly current: readonly IpvsServiceListing[];
  /** Whether a listed virtual service that is not desired was created by this proxy. */
  readonly isOurs: (service: IpvsVirtualServer) => boolean;
  /** Real servers draining since earlier syncs, by realServerKey(). */
  readonly draining: ReadonlyMap<string, DrainingRealServer>;
}

export interface IpvsDiffCounts {
  servicesAdded: number;
  servicesChanged: number;
  servicesDeleted: number;
  realServersAdded: number;
  realServersDeleted: number;
  realServersReweighted: number;
  realServersDraining: number;
}

export interface IpvsDiff {
  readonly payload: string;
  /** The real servers still draining after this payload is applied. */
  readonly draining: Map<string, DrainingRealServer>;
  readonly counts: IpvsDiffCounts;
}

/**
 * Upstream drains only connection-oriented protocols: a UDP or SCTP real server goes at once
 * (expire_nodest_conn then drops its flows on their next packet).
 */
function drainsGracefully(service: IpvsVirtualServer): boolean {
  return service.protocol === 'TCP';
}

export function diffIpvs(input: IpvsDiffInput): IpvsDiff {
  const w = new IpvsadmRestoreWriter();
  const draining = new Map<string, DrainingRealServer>();
  const counts: IpvsDiffCounts = {
    servicesAdded: 0,
    servicesChanged: 0,
    servicesDeleted: 0,
    realServersAdded: 0,
    realServersDeleted: 0,
    realServersReweighted: 0,
    realServersDraining: 0,
  };
  const current = new Map(input.current.map((l) => [virtualServerKey(l.service), l]));

  const addRealServer = (service: IpvsVirtualServer, address: string, port: number) => {
    w.addRealServer(service, { address, port, forward: 'Masq', weight: 1 });
    counts.realServersAdded++;
  };

  const removeRealServer = (service: IpvsVirtualServer, rs: IpvsRealServer) => {
    const busy = rs.activeConnections + rs.inactiveConnections > 0;
    if (!drainsGracefully(service) || !busy) {
      w.deleteRealServer(service, rs);
      counts.realServersDeleted++;
      return;
    }
    if (rs.weight !== 0) {
      w.editRealServer(service, { ...rs, forward: 'Masq', weight: 0 });
      counts.realServersReweighted++;
    }
    draining.set(realServerKey(service, rs.address, rs.port), { service, address: rs.address, port: rs.port });
    counts.realServersDraining++;
  };

  for (const [key, want] of input.desired) {
    const have = current.get(key);
    if (!have) {
      w.addService(want.service);
      counts.servicesAdded++;
      for (const rs of want.realServers.values()) addRealServer(want.service, rs.address, rs.port);
      continue;
    }
    if (!sameServiceSettings(have.service, want.service)) {
      w.editService(want.service);
      counts.servicesChanged++;
    }
    const listed = new Map(have.realServers.map((rs) => [ipvsHostPort(rs.address, rs.port), rs]));
    for (const [hostPort, rs] of want.realServers) {
      const existing = listed.get(hostPort);
      if (!existing) {
        addRealServer(want.service, rs.address, rs.port);
      } else if (input.draining.has(realServerKey(want.service, rs.address, rs.port))) {
        // Re-added while draining: start afresh, as upstream, so it is not left at weight 0.
        w.deleteRealServer(want.service, existing);
        counts.realServersDeleted++;
        addRealServer(want.service, rs.address, rs.port);
      } else if (existing.weight !== 1 || existing.forward !== 'Masq') {
        w.editRealServer(want.service, { address: rs.address, port: rs.port, forward: 'Masq', weight: 1 });
        counts.realServersReweighted++;
      }
    }
    for (const [hostPort, rs] of listed) {
      if (!want.realServers.has(hostPort)) removeRealServer(want.service, rs);
    }
  }

  for (const [key, have] of current) {
    if (input.desired.has(key) || !input.isOurs(have.service)) continue;
    w.deleteService(have.service);
    counts.servicesDeleted++;
  }

  return { payload: w.toString(), draining, counts };
}
