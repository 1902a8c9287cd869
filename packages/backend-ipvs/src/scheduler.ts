// IPVS schedulers kube-proxy accepts, and the flags each one needs.

export const IPVS_SCHEDULERS = ['rr', 'wrr', 'lc', 'wlc', 'lblc', 'lblcr', 'sh', 'dh', 'sed', 'nq', 'mh'] as const;
export type IpvsScheduler = (typeof IPVS_SCHEDULERS)[number];

export const DEFAULT_SCHEDULER: IpvsScheduler = 'rr';

export interface SchedulerChoice {
  readonly scheduler: IpvsScheduler;
  /** `-b` flags, sorted as ipvsadm lists them. */
  readonly flags: readonly string[];
  /** Set when the configured name was not usable and the default was taken instead. */
  readonly warning?: string;
}

/**
 * Resolves `ipvs.scheduler`: empty means rr (as upstream). Maglev hashing gets the port in its
 * hash (`mh-port`, upstream's source-hash flag) so that connections from one client spread out.
 */
export function chooseScheduler(configured: string): SchedulerChoice {
  const name = configured.trim();
  if (name === '') return { scheduler: DEFAULT_SCHEDULER, flags: [] };
  if (!(IPVS_SCHEDULERS as readonly string[]).includes(name)) {
    return { scheduler: DEFAULT_SCHEDULER, flags: [], warning: `unknown IPVS scheduler "${name}", using ${DEFAULT_SCHEDULER}` };
  }
  const scheduler = name as IpvsScheduler;
  return { scheduler, flags: scheduler === 'mh' ? ['mh-port'] : [] };
}
