/**
 * The bench's DNS provider API for the clients that are not amlcert: lego's exec provider and certbot's manual
 * hooks call it (curl, bench/hooks/), and so does the floor. `POST /present` and `POST /cleanup` with form fields
 * `fqdn` and `value` add or remove one TXT value in the zone store, exactly as an ARM write does: the value reaches
 * the authoritative DNS view after the same injected propagation delay (zones.propagationDelayMs).
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { ZoneStore } from "../test/servers/zone-store.js";

export interface Control {
  url: string;
  /** what was presented and removed, for the bench's own checks */
  log: Array<{ op: "present" | "cleanup"; fqdn: string }>;
  close(): Promise<void>;
}

const norm = (s: string) => s.toLowerCase().replace(/\.$/, "");

export async function startControl(zones: ZoneStore): Promise<Control> {
  const log: Control["log"] = [];
  const server: Server = createServer((req, res) => {
    let body = "";
    req.setEncoding("utf8");
    req.on("data", (c: string) => (body += c));
    req.on("end", () => {
      const op = req.url === "/present" ? "present" : req.url === "/cleanup" ? "cleanup" : undefined;
      const form = new URLSearchParams(body);
      const fqdn = norm(form.get("fqdn") ?? "");
      const value = form.get("value") ?? "";
      const zone = zones.zoneFor(fqdn);
      if (req.method !== "POST" || !op || !zone || value === "") {
        res.writeHead(400).end(`bad request: ${req.method} ${req.url} fqdn=${fqdn}\n`);
        return;
      }
      const rel = fqdn === zone.name ? "@" : fqdn.slice(0, -(zone.name.length + 1));
      const current = zones.getRecordSet(zone, "TXT", rel)?.txt ?? [];
      const rest = current.filter((v) => v.join("") !== value);
      if (op === "present") zones.putRecordSet(zone, "TXT", rel, { ttl: 60, txt: [...rest, [value]] });
      else if (rest.length > 0) zones.putRecordSet(zone, "TXT", rel, { ttl: 60, txt: rest });
      else zones.deleteRecordSet(zone, "TXT", rel);
      log.push({ op, fqdn });
      res.writeHead(200).end("ok\n");
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}`, log, close: () => new Promise<void>((r) => server.close(() => r())) };
}
