// What counts as a host name in the config: DNS labels (or an IPv4 address), lowercase.

const HOST_NAME = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$/;

export function isHostName(name: string): boolean {
  return name.length <= 253 && HOST_NAME.test(name);
}
