export const usage = `twinlayer — keeps stopped twins of Docker containers current through an S3 bucket

Usage:
  twinlayer agent  [--config FILE]   one per host: primary or standby, switching on VRRP and fenced through the bucket
  twinlayer push   [--config FILE]   fixed role, primary: watch protected containers and ship their changes
  twinlayer pull   [--config FILE]   fixed role, standby: stage changes into twins and serve the VRRP hook
  twinlayer status [--config FILE]   print this host's status (through its hook; the pusher's status file)
  twinlayer ls [<container>] [--generation N | --all] [--json]
                                     what the bucket holds: generations, containers, divergent tails; with a
                                     container its commits (seq, kind, time, size) in the newest generation
  twinlayer gc [--dry-run] [--json]  delete what retention no longer keeps: old records and generations, expired
                                     divergent tails, blobs and packs nothing retained names (the primary also
                                     does it every gcIntervalMs); prints counts and bytes by kind
  twinlayer restore <container> [--seq N [--generation G] | --at TIME] (--to DIR | --image NAME:TAG [--force])
                                     the container's writable layer at a commit (default the newest), from the
                                     bucket alone: DIR/upper (an overlay upper dir) and DIR/volumes/<name>, or
                                     an image loaded into the config's engine (the base image plus one layer);
                                     an existing NAME:TAG is replaced only with --force
  twinlayer keygen [--out FILE]      new signing key for this host (mode 0600; default signingKeyFile, never
                                     replaced); prints the line to add to trustedKeys on every host
  twinlayer pubkey [--key FILE]      print the trustedKeys line of this host's signing key
  twinlayer s3 [--dir DIR] [--listen HOST:PORT] [--bucket NAME]
                                     embedded S3 server for development and tests (not production)
  twinlayer demo [--keep]            two-host failover demo in network namespaces (root)
  twinlayer demo --service dhcp|web|firewall
                                     a real service (dnsmasq, nginx, nftables) failing over, its client's answers

Configuration: a YAML/JSON file (--config or TWINLAYER_CONFIG) and TWINLAYER_* variables; see README.md.
Containers opt in with the label twinlayer.enable=true.
`;
