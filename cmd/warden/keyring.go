package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"warden/internal/seal"
	"warden/internal/store"
)

func newKeyringCmd(c *cli) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "keyring",
		Short: "Manage Warden's keyring offline (master-key rotation)",
	}
	cmd.AddCommand(newKeyringRotateCmd(c))
	return cmd
}

func newKeyringRotateCmd(c *cli) *cobra.Command {
	var dataDir, dsn, oldFile, newFile string
	cmd := &cobra.Command{
		Use:   "rotate (--data DIR | --database DSN) [--new-key-file FILE]",
		Short: "Re-wrap every key under a new master key",
		Long: `Re-wrap every key of the keyring from the current master key to a new one.
Sealed data is not touched: only the wrapping of the data and signing keys
changes, in one transaction. Running it again is harmless (it reports 0).

The current master key comes from WARDEN_MASTER_KEY (or --master-key-file),
the new one from --new-key-file or WARDEN_NEW_MASTER_KEY. Afterwards start
the servers with the new key as WARDEN_MASTER_KEY. For a rotation without
downtime (several replicas), see docs/seal.md: replicas run with the new key
and WARDEN_MASTER_KEY_PREVIOUS=<old> while this command runs.`,
		Example: `  WARDEN_MASTER_KEY=<old> warden keyring rotate --data /var/lib/warden --new-key-file new.key
  WARDEN_MASTER_KEY=<old> WARDEN_NEW_MASTER_KEY=<new> warden keyring rotate --database postgres://warden@db/warden`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dataDir == "" && dsn == "" {
				dataDir, dsn = c.getenv("WARDEN_DATA"), c.getenv("WARDEN_DATABASE")
			}
			if (dataDir == "") == (dsn == "") {
				return errors.New("say where the keyring lives: exactly one of --data DIR or --database DSN")
			}
			oldKey, err := keyFrom(c, "WARDEN_MASTER_KEY", oldFile, "the current master key: set WARDEN_MASTER_KEY or --master-key-file")
			if err != nil {
				return err
			}
			defer clear(oldKey)
			newKey, err := keyFrom(c, "WARDEN_NEW_MASTER_KEY", newFile, "the new master key: pass --new-key-file FILE or set WARDEN_NEW_MASTER_KEY")
			if err != nil {
				return err
			}
			defer clear(newKey)
			ctx := cmd.Context()
			st, err := store.Open(ctx, store.Options{DataDir: dataDir, DSN: dsn})
			if err != nil {
				return fmt.Errorf("storage: %w", err)
			}
			defer st.Close()
			n, err := seal.RotateMaster(ctx, st, oldKey, newKey)
			if err != nil {
				return fmt.Errorf("keyring rotate: %w", err)
			}
			// Prove the result: the new key alone must open the whole keyring.
			recs, err := st.ListKeys(ctx)
			if err != nil {
				return fmt.Errorf("keyring rotate: checking the result: %w", err)
			}
			if len(recs) > 0 {
				k, err := seal.Open(ctx, newKey, st)
				if err != nil {
					return fmt.Errorf("keyring rotate: the new master key does not open the rotated keyring: %w", err)
				}
				k.Close()
			}
			fmt.Fprintf(c.stdout, "re-wrapped %d of %d keys under the new master key\nstart the servers with the new key as WARDEN_MASTER_KEY, then destroy the old one\n", n, len(recs))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&dataDir, "data", "", "data directory (SQLite)")
	f.StringVar(&dsn, "database", "", "PostgreSQL URL")
	f.StringVar(&oldFile, "master-key-file", "", "file holding the current master key (instead of WARDEN_MASTER_KEY)")
	f.StringVar(&newFile, "new-key-file", "", "file holding the new master key (mode 0600; instead of WARDEN_NEW_MASTER_KEY)")
	return cmd
}

// keyFrom reads a master key from env (preferred) or a key file.
func keyFrom(c *cli, env, file, missing string) ([]byte, error) {
	if v := c.getenv(env); v != "" {
		k, err := seal.ParseMasterKey(v)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", env, err)
		}
		return k, nil
	}
	if file != "" {
		return seal.ReadMasterKeyFile(file)
	}
	return nil, errors.New("missing " + missing)
}
